from cloudq import App as Celery

app = Celery("myapp", broker="memory://main-script")


@app.task
def add(x, y):
    return x + y


unnamed = Celery(broker="memory://main-script")


@unnamed.task
def mul(x, y):
    return x * y
