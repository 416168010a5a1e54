from cloudq import shared_task


@shared_task
def add(x, y):
    return x + y


def route_task(name, args, kwargs, options, task=None, **kw):
    if name == "celery.ping":
        return {"queue": "default"}
