from guide_app import app


@app.task(bind=True)
def dump_context(self, x, y):
    print(
        "Executing task id {0.id}, args: {0.args!r} kwargs: {0.kwargs!r}".format(  # noqa: UP032
            self.request
        )
    )
