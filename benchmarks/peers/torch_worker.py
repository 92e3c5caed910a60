"""PyTorch peer: a long-lived worker that times forward passes on request.

Started by harness.py as `/usr/bin/python3 torch_worker.py THREADS` with OMP_WAIT_POLICY=PASSIVE,
OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=THREADS and OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset.
Reads one JSON request per line on stdin, answers one JSON line on stdout:
  {"cmd": "info"} -> versions and the threading it runs with
  {"cmd": "run", "model": "bert-base", "policy": "all", "batch": 1, "seq": 16,
   "warmup": 2, "iters": 10} -> {"times_ms": [...]}
The forward is nn.TransformerEncoderLayer's fused fast path (eval mode + torch.inference_mode).
"""
import json
import sys
import time

import torch

from workloads import MODELS, build_stack


def main():
    threads = int(sys.argv[1])
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    stacks = {}
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "info":
            reply = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                     "parallel_info": torch.__config__.parallel_info()}
        elif req["cmd"] == "run":
            key = (req["model"], req["policy"])
            if key not in stacks:
                stacks[key] = build_stack(*key)
            stack = stacks[key]
            d = MODELS[req["model"]][0]
            x = torch.randn(req["batch"], req["seq"], d)
            times = []
            with torch.inference_mode():
                for _ in range(req["warmup"]):
                    stack(x)
                for _ in range(req["iters"]):
                    t0 = time.perf_counter()
                    y = stack(x)
                    times.append((time.perf_counter() - t0) * 1e3)
            assert tuple(y.shape) == (req["batch"], req["seq"], d)
            reply = {"times_ms": times}
        else:
            reply = {"error": f"unknown command {req['cmd']!r}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
