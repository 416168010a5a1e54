task_routes = {"tasks.add": "low-priority"}
