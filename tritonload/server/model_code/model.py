"""Triton Python-backend model shared by every demo model.

It runs inside Triton's Python-backend stub process, not in tritonload. Which deterministic
function it computes and how long an execution takes come from the ``parameters`` block of
the model's config.pbtxt:

* ``function``: text_classifier | image_classifier | recommender | wide_ranker | narrow_ranker
* ``cost_base_us``, ``cost_per_item_us``: one execution (one batch of requests) sleeps
  ``cost_base_us + cost_per_item_us * batch_size`` µs, like a GPU kernel that leaves the CPU
  free.

Every output is a cheap, exact function of its own request's inputs, so tests can check that
each response belongs to its request (the formulas are in demo_functions.py, shared with tests).
"""

import json
import time

import triton_python_backend_utils as pb_utils
from demo_functions import FUNCTIONS


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.function = FUNCTIONS[params["function"]]
        self.base_s = int(params.get("cost_base_us", 0)) / 1e6
        self.per_item_s = int(params.get("cost_per_item_us", 0)) / 1e6
        self.input_names = [t["name"] for t in config["input"]]
        self.batched = config.get("max_batch_size", 0) > 0

    def execute(self, requests):
        started = time.perf_counter()
        responses, items = [], 0
        for request in requests:
            inputs = {
                name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                for name in self.input_names
            }
            items += len(next(iter(inputs.values()))) if self.batched else 1
            try:
                outputs = self.function(inputs)
                tensors = [pb_utils.Tensor(name, value) for name, value in outputs.items()]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:  # a bad request must not take the model down
                error = pb_utils.TritonError(str(exc))
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
        # The simulated accelerator time covers the whole batch, including the compute above.
        remaining = self.base_s + self.per_item_s * items - (time.perf_counter() - started)
        if remaining > 0:
            time.sleep(remaining)
        return responses
