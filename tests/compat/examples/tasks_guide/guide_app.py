from cloudq import App as Celery

app = Celery("tasks", broker="memory://tasks-guide", backend="memory://tasks-guide")
