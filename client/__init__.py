"""A typed Python client of the OpenSesame HTTP API, sync (`OpenSesame`) and async (`AsyncOpenSesame`).

    from client import OpenSesame
    with OpenSesame("http://127.0.0.1:8000", api_key="...") as api:
        spec = api.register_spec(spec=json.load(open("stripe.json")))
        answer = api.predict(user_id="u1", spec_id=spec.spec_id, events=[Event(endpoint="GET /v1/invoices/in_1")],
                             prompt="get this invoice paid", k=3)
        api.feedback(answer.prediction_id, called="POST /v1/invoices/in_1/pay")

Requests and answers are the server's own pydantic models (`serve.schemas`), so a request the server would refuse
as malformed fails here, before it is sent. Answers of 429 and 503 are retried after their `Retry-After` (a
quota or a full queue says when to come back), and so are refused connections, up to `retries` times; every
other error raises `ApiError` with the service's `error` and `detail`.
"""

from client.api import *  # the package is its module's names
from client.api import __all__ as __all__
