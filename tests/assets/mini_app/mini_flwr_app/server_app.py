"""ServerApp: one FedAvg run over a 3-element float vector."""

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    if cfg["fail"]:
        raise RuntimeError("MINI-SERVER failing on purpose")
    result = FedAvg(fraction_train=1.0, fraction_evaluate=1.0).start(
        grid=grid,
        initial_arrays=ArrayRecord([np.zeros(3, dtype=np.float32)]),
        num_rounds=int(cfg["num-server-rounds"]),
        train_config=ConfigRecord({"lr": 0.1}),
    )
    final = float(result.arrays.to_numpy_ndarrays()[0][0])
    # Each client adds lr * (partition-id + 1); FedAvg with equal weights gives
    # 0.1 * (N + 1) / 2 after one round with N clients (0.150 for N = 2).
    print(f"MINI-SERVER done greeting={cfg['greeting']} final={final:.3f}", flush=True)
