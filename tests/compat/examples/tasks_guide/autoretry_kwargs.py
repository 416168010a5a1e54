from guide_app import app
from services import FailWhaleError, twitter


@app.task(autoretry_for=(FailWhaleError,), retry_kwargs={"max_retries": 5})
def refresh_timeline(user):
    return twitter.refresh_timeline(user)
