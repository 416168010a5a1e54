## Broker settings.
broker_url = "memory://configuration"

# List of modules to import when the Celery worker starts.
imports = ("myapp.tasks",)

## Using the database to store task state and results.
result_backend = "memory://configuration"

task_annotations = {"tasks.add": {"rate_limit": "10/s"}}
