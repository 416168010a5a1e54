"""``task_routes`` in every form of Celery's configuration and routing guides (issue 24)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloudq import App
from cloudq.errors import ConfigurationError
from cloudq.testing import process_one

Example = Callable[[str], Path]


def make() -> App:
    return App("routes", broker="memory://compat-routes", backend="memory://compat-routes")


def test_configuration_guide_dict_with_glob_regex_and_route_dicts() -> None:
    app = make()
    app.conf.task_routes = {
        "celery.ping": "default",
        "mytasks.add": "cpu-bound",
        "feed.tasks.*": "feeds",  # <-- glob pattern
        re.compile(r"(image|video)\.tasks\..*"): "media",  # <-- regex
        "video.encode": {
            "queue": "video",
            "exchange": "media",
            "routing_key": "media.video.encode",
        },
    }
    assert app.route("celery.ping") == "default"
    assert app.route("mytasks.add") == "cpu-bound"
    assert app.route("feed.tasks.import_feed") == "feeds"
    assert app.route("image.tasks.resize") == "media"
    assert app.route("video.tasks.cut") == "media"
    assert app.route("video.encode") == "video"  # exact names before patterns, as in Celery
    assert app.route("other.task") == "default"
    assert set(app.conf.task_routes.values()) == {"default", "cpu-bound", "feeds", "media", "video"}


def test_configuration_guide_router_path_and_dict(example: Example) -> None:
    example("configuration")
    app = make()
    app.conf.task_routes = ("myapp.tasks.route_task", {"celery.ping": "default"})
    assert app.route("celery.ping") == "default"
    app.conf.task_default_queue = "elsewhere"
    assert app.route("myapp.tasks.add") == "elsewhere"


def test_routing_guide_queue_dicts() -> None:
    app = make()
    app.conf.task_routes = {"feed.tasks.import_feed": {"queue": "feeds"}}
    assert app.route("feed.tasks.import_feed") == "feeds"
    app.conf.task_routes = {"feed.tasks.*": {"queue": "feeds"}}
    assert app.route("feed.tasks.other") == "feeds"
    app.conf.task_default_queue = "default"
    assert app.route("web.tasks.x") == "default"


def test_routing_guide_ordered_list_of_patterns() -> None:
    app = make()
    app.conf.task_routes = (
        [
            ("feed.tasks.*", {"queue": "feeds"}),
            ("web.tasks.*", {"queue": "web"}),
            (re.compile(r"(video|image)\.tasks\..*"), {"queue": "media"}),
        ],
    )
    assert app.route("feed.tasks.a") == "feeds"
    assert app.route("web.tasks.a") == "web"
    assert app.route("image.tasks.a") == "media"


def test_routing_guide_router_function_naming_an_exchange_is_refused(example: Example) -> None:
    example("routing")
    from myapp.routers import route_task  # type: ignore[import-not-found]

    app = make()
    app.conf.task_routes = (route_task,)
    assert app.route("myapp.tasks.other") == "default"  # the router returned None
    with pytest.raises(ConfigurationError, match=r"names no queue.*\{'queue': 'name'\}"):
        app.route("myapp.tasks.compress_video")
    app.conf.task_routes = ("myapp.routers.route_to_queue",)
    assert app.route("myapp.tasks.compress_video") == "video"


def test_router_functions_get_the_call_and_the_first_answer_wins() -> None:
    app = make()
    seen: list[tuple[Any, ...]] = []

    def by_size(
        name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
    ) -> Any:
        seen.append((name, tuple(args), dict(kwargs), task))
        if kwargs.get("size", 0) > 100:
            return "big"
        return None

    def everything_else(name: str, *args: Any, **kw: Any) -> str:
        return "small"

    app.conf.task_routes = [by_size, {"never.*": "x"}, everything_else]

    @app.task
    def resize(image_id: int, size: int = 0) -> int:
        return image_id

    big = resize.delay(1, size=500)
    small = resize.delay(2)
    assert process_one(app, "big") is not None
    assert process_one(app, "small") is not None
    assert (big.get(timeout=1), small.get(timeout=1)) == (1, 2)
    assert seen[0] == (resize.name, (1,), {"size": 500}, resize)


def test_task_queue_option_and_call_option_come_before_routes() -> None:
    app = make()
    app.conf.task_routes = {"*": "routed"}

    @app.task(queue="own")
    def own() -> None: ...

    @app.task
    def routed() -> None: ...

    assert app.route(own.name) == "own"
    assert app.route(routed.name) == "routed"
    routed.apply_async(queue="explicit")
    assert process_one(app, "explicit") is not None


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ({"a.*": {"exchange": "x"}}, "names no queue"),
        ({"a.*": 3}, "must name a queue"),
        ({3: "q"}, "give a task name"),
        ([42], "is not a router"),
        (("no_such_module.route",), "cannot import router"),
    ],
)
def test_bad_routes_fail_when_set(routes: object, message: str) -> None:
    app = make()
    with pytest.raises(ConfigurationError, match=message):
        app.conf.task_routes = routes
    assert app.conf.task_routes == {}


def test_routes_mapping_can_be_changed_in_place() -> None:
    """``app.conf.task_routes["x"] = "q"`` keeps working, as when task_routes was a dict."""
    app = make()
    app.conf.task_routes = {"a.*": "first"}
    app.conf.task_routes["b.task"] = {"queue": "second"}
    app.conf.task_routes.update({"c.*": "third"})
    assert [app.route(n) for n in ("a.x", "b.task", "c.y")] == ["first", "second", "third"]
    del app.conf.task_routes["a.*"]
    assert app.route("a.x") == "default"
    app.conf.task_routes = [{"a.*": "q"}]
    with pytest.raises(ConfigurationError, match=r"assign app\.conf\.task_routes"):
        app.conf.task_routes["b.*"] = "r"
