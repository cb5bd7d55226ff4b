"""Run by the kserve SDK's own environment (.venv-kserve): its REST client in v2 mode.

Usage: kserve_v2.py BASE_URL MODEL_NAME < rows.json, where rows.json is
{"columns": {feature: [values]}, "datatypes": {feature: V2 datatype}, "binary": bool}.
Prints one JSON object: readiness answers and the outputs of one infer.
"""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def main(base_url: str, model: str, spec: dict) -> dict:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=1, timeout=30))
    try:
        inputs = []
        for name, values in spec["columns"].items():
            datatype = spec["datatypes"][name]
            tensor = InferInput(name=name, shape=[len(values)], datatype=datatype)
            dtype = {"BYTES": object, "INT64": np.int64, "FP64": np.float64}[datatype]
            tensor.set_data_from_numpy(np.array(values, dtype=dtype), binary_data=spec["binary"])
            inputs.append(tensor)
        request = InferRequest(model_name=model, infer_inputs=inputs, request_id="kserve-1")
        response = await client.infer(base_url, request, model_name=model)
        outputs = {}
        for output in response.outputs:
            array = output.as_numpy()
            outputs[output.name] = [
                value.decode() if isinstance(value, bytes) else value
                for value in array.reshape(-1).tolist()
            ]
        return {
            "server_ready": await client.is_server_ready(base_url),
            "server_live": await client.is_server_live(base_url),
            "model_ready": await client.is_model_ready(base_url, model),
            "id": response.id,
            "model_name": response.model_name,
            "outputs": outputs,
        }
    finally:
        await client.close()


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1], sys.argv[2], json.load(sys.stdin)))
    print(json.dumps(result))
