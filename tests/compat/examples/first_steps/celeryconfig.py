broker_url = "memory://first-steps"
result_backend = "memory://first-steps"

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "Europe/Oslo"
enable_utc = True
