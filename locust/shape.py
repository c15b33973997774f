"""A step load: BRS_LOCUST_STEPS users (default "1,2,4,8"), each held BRS_LOCUST_STEP_SECS (30).
Use with the locustfile: `locust -f locustfile.py,shape.py ...` (locust/run --step does this)."""
import os

from locust import LoadTestShape


class StepShape(LoadTestShape):
    steps = [int(s) for s in os.environ.get("BRS_LOCUST_STEPS", "1,2,4,8").split(",")]
    step_secs = float(os.environ.get("BRS_LOCUST_STEP_SECS", "30"))

    def tick(self):
        k = int(self.get_run_time() // self.step_secs)
        if k >= len(self.steps):
            return None
        users = self.steps[k]
        return users, users
