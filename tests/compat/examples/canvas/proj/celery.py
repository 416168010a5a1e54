from cloudq import App as Celery

app = Celery("proj", broker="memory://canvas", backend="memory://canvas", include=["proj.tasks"])
