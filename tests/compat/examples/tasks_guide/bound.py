from guide_app import app

from cloudq.utils.log import get_task_logger

logger = get_task_logger(__name__)


@app.task(bind=True)
def add(self, x, y):
    logger.info(self.request.id)
