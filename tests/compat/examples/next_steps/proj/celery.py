from cloudq import App as Celery

app = Celery(
    "proj", broker="memory://next-steps", backend="memory://next-steps", include=["proj.tasks"]
)

# Optional configuration, see the application user guide.
app.conf.update(
    result_expires=3600,
)

if __name__ == "__main__":
    app.start()
