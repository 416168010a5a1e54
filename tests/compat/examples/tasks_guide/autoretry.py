from guide_app import app
from services import twitter
from twitter_exceptions import FailWhaleError


@app.task(autoretry_for=(FailWhaleError,))
def refresh_timeline(user):
    return twitter.refresh_timeline(user)
