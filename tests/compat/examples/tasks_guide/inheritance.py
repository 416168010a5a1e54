from guide_app import app

import cloudq as celery


class MyTask(celery.Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        print("{0!r} failed: {1!r}".format(task_id, exc))  # noqa: UP030, UP032


@app.task(base=MyTask)
def add(x, y):
    raise KeyError()
