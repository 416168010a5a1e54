task_annotations = {"tasks.add": {"rate_limit": "10/m"}}
