"""The server-rendered pages: Workers, Queues, Tasks, a task, Dead letters, a job's progress.

Fragments (``.../rows``) are what htmx reloads for live updates. Actions are plain HTML forms
(POST, with the CSRF field); redrive and purge first render a confirmation of what they will do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from cloudq.control.output import ago
from cloudq.control.store import find_revoke_store
from cloudq.dashboard import actions, views
from cloudq.dashboard.api import dash_of
from cloudq.dashboard.csrf import FIELD, parse_form
from cloudq.dashboard.deadletters import list_rows
from cloudq.dashboard.observer import HISTORY_SECONDS
from cloudq.errors import CloudqError

HERE = Path(__file__).parent
DEAD_LETTERS_LISTED = 100
"""Dead letters one page lists (read under a short lease, released at once)."""

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_env.filters["ago"] = ago
templates = Jinja2Templates(env=_env)


def _render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    dash = dash_of(request)
    base = {
        "user": request.state.user,
        "csrf": request.state.csrf,
        "csrf_field": FIELD,
        "about": views.about(dash.app),
        "queues": dash.queues(),
    }
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status)


async def _form(request: Request) -> dict[str, list[str]]:
    return parse_form(await request.body())


def _one(form: dict[str, list[str]], key: str) -> str | None:
    values = form.get(key)
    return values[0] if values else None


async def home(request: Request) -> Response:
    return RedirectResponse("/workers", status_code=303)


# --- workers ----------------------------------------------------------------------------------
async def workers_page(
    request: Request, notice: str | None = None, failed: bool = False
) -> Response:
    records, error = await run_in_threadpool(views.workers, dash_of(request).app)
    return _render(
        request, "workers.html", workers=records, error=error, notice=notice, failed=failed
    )


async def workers_rows(request: Request) -> Response:
    records, error = await run_in_threadpool(views.workers, dash_of(request).app)
    return _render(request, "_workers.html", workers=records, error=error)


async def worker_command(request: Request) -> Response:
    form = await _form(request)
    name, command = request.path_params["name"], request.path_params["command"]
    try:
        raw = _one(form, "n")
        n = int(raw) if raw else None
        if n is not None and n < 1:
            raise actions.BadRequest("the number of slots must be at least 1")
        reply = await run_in_threadpool(
            actions.worker_command, dash_of(request), request.state.user, name, command, n
        )
    except (LookupError, ValueError, CloudqError) as exc:
        return await workers_page(request, f"{command} {name}: {exc}", failed=True)
    state = {True: "OK", False: "ERROR", None: "NO REPLY"}[reply.ok]
    return await workers_page(request, f"{command} {name}: {state}: {reply.reply}", not reply.ok)


# --- queues -----------------------------------------------------------------------------------
async def queues_page(request: Request) -> Response:
    rows = await run_in_threadpool(views.queues, dash_of(request))
    has_events = dash_of(request).observer.has_events
    return _render(
        request, "queues.html", rows=rows, has_events=has_events, minutes=HISTORY_SECONDS // 60
    )


async def queues_rows(request: Request) -> Response:
    rows = await run_in_threadpool(views.queues, dash_of(request))
    return _render(request, "_queues.html", rows=rows)


# --- tasks ------------------------------------------------------------------------------------
async def tasks_page(request: Request) -> Response:
    wanted = (request.query_params.get("id") or "").strip()
    if wanted:
        return RedirectResponse(request.url_for("task", task_id=wanted), status_code=303)
    rows, note = await run_in_threadpool(views.recent_tasks, dash_of(request))
    return _render(request, "tasks.html", rows=rows, note=note)


async def tasks_rows(request: Request) -> Response:
    rows, note = await run_in_threadpool(views.recent_tasks, dash_of(request))
    return _render(request, "_tasks.html", rows=rows, note=note)


async def task_page(request: Request, notice: str | None = None) -> Response:
    task_id = request.path_params["task_id"]
    info = await run_in_threadpool(views.task_info, dash_of(request), task_id)
    can_revoke = find_revoke_store(dash_of(request).app) is not None
    return _render(
        request,
        "task.html",
        status=200 if info is not None else 404,
        task_id=task_id,
        info=info,
        notice=notice,
        can_revoke=can_revoke,
        no_args=views.NO_ARGS_NOTE,
    )


async def task_revoke(request: Request) -> Response:
    form = await _form(request)
    task_id = request.path_params["task_id"]
    terminate = _one(form, "terminate") == "1"
    try:
        await run_in_threadpool(
            actions.revoke, dash_of(request), request.state.user, task_id, terminate
        )
    except (ValueError, CloudqError) as exc:
        return await task_page(request, f"not revoked: {exc}")
    how = " and its termination requested" if terminate else ""
    return await task_page(request, f"Revoked{how}: workers see it on their next heartbeat.")


# --- dead letters -----------------------------------------------------------------------------
async def dead_letters_page(request: Request) -> Response:
    dash = dash_of(request)
    queue = request.query_params.get("queue") or (dash.queues() or [""])[0]
    rows, error = [], None
    if queue not in dash.queues():
        error = f"unknown queue {queue!r}: pick one above"
    else:
        try:
            rows = await run_in_threadpool(list_rows, dash.app, queue, DEAD_LETTERS_LISTED)
            dash.remember(rows)
        except CloudqError as exc:
            error = str(exc)
    return _render(
        request,
        "deadletters.html",
        queue=queue,
        rows=rows,
        error=error,
        limit=DEAD_LETTERS_LISTED,
    )


async def dead_letters_action(request: Request) -> Response:
    """Redrive (all or selected) or purge: the first POST renders the confirmation, the
    confirmed one starts the job and shows its progress."""
    dash = dash_of(request)
    form = await _form(request)
    queue, action = request.path_params["queue"], request.path_params["action"]
    selected = [i for i in form.get("ids", []) if i]
    trust_unsigned = _one(form, "trust_unsigned") == "1"
    if action not in ("redrive", "redrive-selected", "purge"):
        return Response("unknown action", status_code=404)
    if action == "redrive-selected" and not selected:
        return _render(
            request,
            "confirm.html",
            status=400,
            error="select dead letters first",
            queue=queue,
            action=action,
            ids=[],
            trust_unsigned=False,
        )
    if _one(form, "confirmed") != "1":
        return _render(
            request,
            "confirm.html",
            queue=queue,
            action=action,
            ids=selected if action == "redrive-selected" else [],
            trust_unsigned=trust_unsigned,
            error=None,
        )
    user = request.state.user
    try:
        if action == "purge":
            job = await run_in_threadpool(actions.start_purge, dash, user, queue)
        else:
            ids = selected if action == "redrive-selected" else None
            job = await run_in_threadpool(
                actions.start_redrive, dash, user, queue, ids, trust_unsigned
            )
    except (ValueError, CloudqError) as exc:
        return _render(
            request,
            "confirm.html",
            status=400,
            error=str(exc),
            queue=queue,
            action=action,
            ids=selected,
            trust_unsigned=trust_unsigned,
        )
    return RedirectResponse(request.url_for("job", job_id=job.id), status_code=303)


async def job_page(request: Request) -> Response:
    job = dash_of(request).jobs.get(request.path_params["job_id"])
    if job is None:
        return Response("no such job (finished jobs are kept for a while only)", status_code=404)
    return _render(request, "job.html", job=job)


async def job_status(request: Request) -> Response:
    job = dash_of(request).jobs.get(request.path_params["job_id"])
    if job is None:
        return Response("no such job", status_code=404)
    return _render(request, "_job.html", job=job)


routes = [
    Route("/", home),
    Route("/workers", workers_page),
    Route("/workers/rows", workers_rows),
    Route("/workers/{name:str}/{command:str}", worker_command, methods=["POST"]),
    Route("/queues", queues_page),
    Route("/queues/rows", queues_rows),
    Route("/tasks", tasks_page),
    Route("/tasks/rows", tasks_rows),
    Route("/task/{task_id:str}", task_page, name="task"),
    Route("/task/{task_id:str}/revoke", task_revoke, methods=["POST"]),
    Route("/dead-letters", dead_letters_page),
    Route("/dead-letters/{queue:str}/{action:str}", dead_letters_action, methods=["POST"]),
    Route("/jobs/{job_id:str}", job_page, name="job"),
    Route("/jobs/{job_id:str}/status", job_status),
    Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
]
