from cloudq import App as Celery

app = Celery("tasks", backend="memory://first-steps", broker="memory://first-steps")


@app.task
def add(x, y):
    return x + y
