from guide_app import app
from services import Database, User, process_row

from cloudq import Task


class NaiveAuthenticateServer(Task):
    def __init__(self):
        self.users = {"george": "password"}

    def run(self, username, password):
        try:
            return self.users[username] == password
        except KeyError:
            return False


class DatabaseTask(Task):
    _db = None

    @property
    def db(self):
        if self._db is None:
            self._db = Database.connect()
        return self._db


@app.task(base=DatabaseTask, bind=True)
def process_rows(self: DatabaseTask):
    for row in self.db.table.all():
        process_row(row)


class MyTask(Task):
    def before_start(self, task_id, args, kwargs):
        print(f"Task {task_id} starting with args {args}")
        # This blocks - run() won't start until this returns

    def on_success(self, retval, task_id, args, kwargs):
        print(f"Task {task_id} succeeded with result: {retval}")
        # Result is already visible to clients at this point

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        print(f"Task {task_id} failed: {exc}")
        # Task state is already FAILURE in backend

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        print(f"Task {task_id} finished with status: {status}")
        # Always runs last


@app.task(base=MyTask)
def handled(x):
    return x * 2


@app.task(serializer="json")
def create_user(username, password):
    User.objects.create(username=username, password=password)


@app.task(ignore_result=True)
def mytask():
    create_user("ignored", "x")
