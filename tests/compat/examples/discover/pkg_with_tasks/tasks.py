from cloudq import shared_task


@shared_task
def ping():
    return "pong"
