"""The JSON API, on Flower's paths where they fit, so Flower scripts keep working.

``GET /api/workers``, ``GET /api/tasks``, ``GET /api/task/info/<id>``,
``GET /api/task/result/<id>``, ``GET /api/queues/length``;
``POST /api/task/revoke/<id>[?terminate=true]``,
``POST /api/worker/shutdown/<name>``, ``POST /api/worker/pool/grow/<name>[?n=N]``,
``POST /api/worker/pool/shrink/<name>[?n=N]``. POSTs need the ``X-Requested-With`` header (or the
CSRF token): see ``cloudq.dashboard.csrf``. ``GET /api/queues/history`` is the chart's data.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cloudq.dashboard import actions, views
from cloudq.dashboard.views import Dash
from cloudq.errors import CloudqError


def dash_of(request: Request) -> Dash:
    dash: Dash = request.app.state.dash
    return dash


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except ValueError:
        raise actions.BadRequest(f"{name} must be a whole number") from None
    if n < 1:
        raise actions.BadRequest(f"{name} must be at least 1")
    return n


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


async def workers(request: Request) -> JSONResponse:
    records, error = await run_in_threadpool(views.workers, dash_of(request).app)
    if error is not None:
        return _error(503, error)
    name = request.query_params.get("workername")
    return JSONResponse(
        {h: views.worker_api(r) for h, r in records.items() if not name or h == name}
    )


async def worker_shutdown(request: Request) -> JSONResponse:
    return await _worker_command(request, "shutdown")


async def worker_pool(request: Request) -> JSONResponse:
    return await _worker_command(request, f"pool_{request.path_params['command']}")


async def _worker_command(request: Request, command: str) -> JSONResponse:
    name = request.path_params["name"]
    try:
        n = _int(request.query_params.get("n"), "n")
        reply = await run_in_threadpool(
            actions.worker_command, dash_of(request), request.state.user, name, command, n
        )
    except actions.BadRequest as exc:
        return _error(400, str(exc))
    except LookupError as exc:
        return _error(404, str(exc.args[0]))
    except (ValueError, CloudqError) as exc:
        return _error(403 if isinstance(exc, ValueError) else 503, str(exc))
    status = 200 if reply.ok else 504 if reply.ok is None else 403
    return JSONResponse({"message": reply.reply, "ok": reply.ok}, status_code=status)


async def tasks(request: Request) -> JSONResponse:
    rows, _ = await run_in_threadpool(views.recent_tasks, dash_of(request))
    params = request.query_params
    try:
        limit = _int(params.get("limit"), "limit")
    except actions.BadRequest as exc:
        return _error(400, str(exc))
    wanted = {
        "hostname": params.get("workername"),
        "name": params.get("taskname"),
        "state": params.get("state"),
    }
    chosen = [r for r in rows if all(v is None or r.get(k) == v for k, v in wanted.items())]
    out: dict[str, Any] = {}
    for row in chosen[:limit]:
        out[row["uuid"]] = {
            "uuid": row["uuid"],
            "name": row["name"],
            "state": row["state"],
            "worker": row["hostname"] or None,
            "attempt": row["attempt"],
            "received": row["received"],
            "runtime": row["runtime"],
            "timestamp": row.get("updated"),
            "info": row["info"] or None,
        }
    return JSONResponse(out)


async def task_info(request: Request) -> JSONResponse:
    task_id = request.path_params["task_id"]
    info = await run_in_threadpool(views.task_info, dash_of(request), task_id)
    if info is None:
        return _error(404, f"Unknown task '{task_id}'")
    return JSONResponse(info)


async def task_result(request: Request) -> JSONResponse:
    task_id = request.path_params["task_id"]
    info = await run_in_threadpool(views.task_info, dash_of(request), task_id)
    info = info or {"state": "PENDING", "result": None}
    result = info["result"] if info["exception"] is None else info["exception"]
    return JSONResponse({"task-id": task_id, "state": info["state"], "result": result})


async def task_revoke(request: Request) -> JSONResponse:
    task_id = request.path_params["task_id"]
    terminate = _flag(request.query_params.get("terminate"))
    try:
        await run_in_threadpool(
            actions.revoke, dash_of(request), request.state.user, task_id, terminate
        )
    except CloudqError as exc:
        return _error(503, str(exc))
    return JSONResponse({"message": f"Revoked '{task_id}'"})


async def queues_length(request: Request) -> JSONResponse:
    rows = await run_in_threadpool(views.queues, dash_of(request))
    return JSONResponse(
        {
            "active_queues": [
                {
                    "name": r["queue"],
                    "messages": r["ready"],
                    "in_flight": r["in_flight"],
                    "delayed": r["delayed"],
                    "dead_letters": r["dead_letters"],
                    "error": r["error"],
                }
                for r in rows
            ]
        }
    )


async def queues_history(request: Request) -> JSONResponse:
    dash = dash_of(request)
    await run_in_threadpool(dash.observer.sample_heartbeats)
    source = "events" if dash.observer.has_events else "heartbeats"
    return JSONResponse({**dash.observer.buckets.series(), "source": source})


routes = [
    Route("/api/workers", workers),
    Route("/api/worker/shutdown/{name:str}", worker_shutdown, methods=["POST"]),
    Route("/api/worker/pool/{command:str}/{name:str}", worker_pool, methods=["POST"]),
    Route("/api/tasks", tasks),
    Route("/api/task/info/{task_id:str}", task_info),
    Route("/api/task/result/{task_id:str}", task_result),
    Route("/api/task/revoke/{task_id:str}", task_revoke, methods=["POST"]),
    Route("/api/queues/length", queues_length),
    Route("/api/queues/history", queues_history),
]
