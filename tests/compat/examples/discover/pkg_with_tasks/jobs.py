from cloudq import shared_task


@shared_task
def job():
    return "done"
