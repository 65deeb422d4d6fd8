"""Load against a running OpenSesame: `locust -f loadtest/locustfile.py --host http://127.0.0.1:8000`.

Each simulated user registers the spec once (OPENSESAME_SPEC, default: the Stripe spec of ../shared/data),
then walks through a session: predict, report what it "called" (the top prediction, sometimes another
operation or nothing), predict again with the call appended to its history.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from locust import HttpUser, between, task

SPEC = Path(os.environ.get("OPENSESAME_SPEC", Path(__file__).parents[2] / "shared/data/specs/stripe.json"))
PROMPTS = ["", "", "get this invoice paid", "refund the last charge", "list my customers", "cancel the subscription"]


class ApiUser(HttpUser):
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        response = self.client.post("/specs", json={"spec": SPEC.read_text()}, name="/specs")
        self.spec_id = response.json()["spec_id"]
        self.history: list[dict[str, str]] = []

    @task
    def predict_and_feedback(self) -> None:
        body = {
            "user_id": f"locust-{id(self)}",
            "spec_id": self.spec_id,
            "events": self.history[-20:],
            "prompt": random.choice(PROMPTS),
            "k": 5,
        }
        with self.client.post("/predict", json=body, name="/predict", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            predicted = response.json()
        if not predicted["predictions"] or random.random() < 0.1:
            feedback = {"prediction_id": predicted["prediction_id"], "none": True}
            self.history = []
        else:
            choice = predicted["predictions"][0 if random.random() < 0.7 else -1]
            feedback = {"prediction_id": predicted["prediction_id"], "called": f"{choice['method']} {choice['path']}"}
            self.history.append({"endpoint": f"{choice['method']} {choice['path']}"})
        self.client.post("/feedback", data=json.dumps(feedback), headers={"content-type": "application/json"},
                         name="/feedback")
