def route_task(name, args, kwargs, options, task=None, **kw):
    if name == "myapp.tasks.compress_video":
        return {"exchange": "video", "exchange_type": "topic", "routing_key": "video.compress"}


def route_to_queue(name, args, kwargs, options, task=None, **kw):
    if name == "myapp.tasks.compress_video":
        return {"queue": "video"}
