"""The Flower app: FedAvg weighted by examples, each round's clients and batches those of the tff_gpt run.

The data directory is `$PEERS_DATA` (`run.py` sets it before Flower starts;
Ray's workers inherit it). A round's `i`-th message goes to the `i`-th
SuperNode and names client `i` of that round: in simulation any node can
play any client, as any TFF client computation can run any client's
dataset, so the same clients train on the same batches in both frameworks.
"""

import json
import os
import time

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from benchmarks.flower_app import lm

client_app = ClientApp()
server_app = ServerApp()
_models = {}  # One model per worker process (a Ray actor serves many clients), built at its first client.


def _data() -> str:
  return os.environ["PEERS_DATA"]


def _model(plan: dict):
  if "model" not in _models:
    _models["model"] = lm.build_model(_data(), plan)
  return _models["model"]


@client_app.train()
def train(msg: Message, context: Context) -> Message:
  plan = lm.read_plan(_data())
  model = _model(plan)
  lm.load_trained(model, msg.content["arrays"].to_torch_state_dict())
  config = msg.content["config"]
  batches = lm.client_batches(_data(), int(config["server-round"]), int(config["client"]))
  result = lm.train_client(model, batches, plan)
  metrics = MetricRecord(
    {"num-examples": result.examples, "tokens": result.tokens, "loss_sum": result.loss_sum}
  )
  content = RecordDict({"arrays": ArrayRecord(lm.trained_state(model)), "metrics": metrics})
  return Message(content=content, reply_to=msg)


class SameClients(FedAvg):
  """FedAvg (weighted by `num-examples`) whose round `r` trains the plan's clients of round `r`."""

  def __init__(self, plan: dict):
    super().__init__(fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=max(plan["clients"]))
    self.plan = plan
    self.rounds: list[dict] = []
    self._started = 0.0

  def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid):
    self._started = time.perf_counter()
    clients = self.plan["clients"][server_round - 1]
    nodes = sorted(grid.get_node_ids())
    while len(nodes) < clients:  # Nodes register at start; wait for all.
      time.sleep(0.1)
      nodes = sorted(grid.get_node_ids())
    return [
      Message(
        content=RecordDict(
          {"arrays": arrays, "config": ConfigRecord({"server-round": server_round, "client": i})}
        ),
        dst_node_id=nodes[i],
        message_type=MessageType.TRAIN,
      )
      for i in range(clients)
    ]

  def aggregate_train(self, server_round: int, replies):
    replies = list(replies)
    arrays, _ = super().aggregate_train(server_round, replies)
    metrics = [m.content["metrics"] for m in replies if not m.has_error()]
    tokens = sum(int(m["tokens"]) for m in metrics)
    self.rounds.append(
      {
        "round": server_round,
        "seconds": time.perf_counter() - self._started,
        "clients": len(metrics),
        "tokens": tokens,
        "train_loss": sum(float(m["loss_sum"]) for m in metrics) / max(tokens, 1),
      }
    )
    print(f"flower round {server_round}: {self.rounds[-1]}", flush=True)
    return arrays, None


@server_app.main()
def main(grid: Grid, context: Context) -> None:
  plan = lm.read_plan(_data())
  model = lm.build_model(_data(), plan)
  strategy = SameClients(plan)
  result = strategy.start(
    grid=grid, initial_arrays=ArrayRecord(lm.trained_state(model)), num_rounds=len(plan["clients"])
  )
  lm.load_trained(model, result.arrays.to_torch_state_dict())
  lm.save_final(model, os.path.join(_data(), f"flower_final_{lm.adapters()}"))
  with open(os.path.join(_data(), f"flower_rounds_{lm.adapters()}.json"), "w") as f:
    json.dump(strategy.rounds, f, indent=1)
