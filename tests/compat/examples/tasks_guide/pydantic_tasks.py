from typing import Optional

from guide_app import app
from pydantic import BaseModel


class ArgModel(BaseModel):
    value: int


class ReturnModel(BaseModel):
    value: str


@app.task(pydantic=True)
def x(arg: ArgModel) -> ReturnModel:
    # args/kwargs type hinted as Pydantic model will be converted
    assert isinstance(arg, ArgModel)

    # The returned model will be converted to a dict automatically
    return ReturnModel(value=f"example: {arg.value}")


@app.task(pydantic=True)
def optional_x(arg: Optional[ArgModel] = None) -> Optional[ReturnModel]:  # noqa: UP045
    if arg is None:
        return None
    return ReturnModel(value=f"example: {arg.value}")
