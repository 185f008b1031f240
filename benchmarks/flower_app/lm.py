"""The PyTorch side of the comparison: the model, one client's local training, the held-out loss.

Reads what `benchmarks/peers.py` wrote into the data directory:

- `plan.json`: rounds, clients per round, optimizer and rate, `trainable`
  (`all` or `lora:R`), LoRA alpha, threads per client, clients at once;
- `initial/`: the tff_gpt run's initial model as a Hugging Face GPT-2
  directory (the project's own export);
- `batches/r{round:04d}_c{client:03d}.npz`: what client `client` of round
  `round` trains on, batch by batch (`token_ids`, `padding_mask`, `labels`,
  `ends`: where each batch ends), exactly the tff_gpt client's batches;
- `eval.npz`: the held-out evaluation batches, alike.

The loss is tff_gpt's: cross-entropy over labels that are not -1 (padding),
averaged over a batch's tokens; the reported loss of a round is the mean
over all its clients' tokens, as TFF's metric sums them.
"""

import dataclasses
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

IGNORE_LABEL = -1


def read_plan(data_dir: str) -> dict:
  with open(os.path.join(data_dir, "plan.json")) as f:
    return json.load(f)


def lora_rank(plan: dict) -> int | None:
  kind, _, value = plan["trainable"].partition(":")
  return int(value) if kind == "lora" else None


def adapters() -> str:
  """Which LoRA the Flower side trains (`$PEERS_ADAPTERS`): "peft" (PEFT on `c_attn`, what FlowerTune's
  baselines use) or "tff_gpt" (`QVAdapters`: tff_gpt's own adapters and initial values, for the losses)."""
  return os.environ.get("PEERS_ADAPTERS", "peft")


class QVAdapters(torch.nn.Module):
  """tff_gpt's LoRA on GPT-2's fused `c_attn`: rank-R adapters on the query and value blocks alone
  (`x A B * alpha / R`, A `[hidden, R]`, B `[R, hidden]`), the key block untouched."""

  def __init__(self, c_attn, values: dict, scale: float):
    super().__init__()
    self.base, self.scale = c_attn, scale
    for name, value in values.items():  # a_q, b_q, a_v, b_v
      self.register_parameter(name, torch.nn.Parameter(torch.from_numpy(value.copy())))

  def forward(self, x):
    out = self.base(x)
    h = out.shape[-1] // 3
    dq = (x @ self.a_q) @ self.b_q * self.scale
    dv = (x @ self.a_v) @ self.b_v * self.scale
    return torch.cat([out[..., :h] + dq, out[..., h : 2 * h], out[..., 2 * h :] + dv], dim=-1)


def _with_qv_adapters(model, data_dir: str, plan: dict, rank: int):
  """`model` with `QVAdapters` in every block, from tff_gpt's initial adapters (its export's subset)."""
  with np.load(os.path.join(data_dir, "initial_export", "trained_subset.npz")) as f:
    subset = {k: f[k] for k in f.files}
  for p in model.parameters():
    p.requires_grad_(False)
  for i, block in enumerate(model.transformer.h):
    key = f"transformer_layer_{i}/self_attention/{{}}/lora_{{}}"
    values = {f"{ab}_{qv[0]}": subset[key.format(qv, ab)] for qv in ("query", "value") for ab in "ab"}
    block.attn.c_attn = QVAdapters(block.attn.c_attn, values, plan["lora_alpha"] / rank)
  return model


def build_model(data_dir: str, plan: dict) -> torch.nn.Module:
  """The initial GPT-2 (LoRA: PEFT's adapters on `c_attn`, seeded, as FlowerTune's baselines add them;
  or tff_gpt's, `adapters()`)."""
  from transformers import GPT2LMHeadModel

  torch.set_num_threads(plan["threads"])
  model = GPT2LMHeadModel.from_pretrained(os.path.join(data_dir, "initial"))
  rank = lora_rank(plan)
  if rank is None:
    return model
  if adapters() == "tff_gpt":
    return _with_qv_adapters(model, data_dir, plan, rank)
  from peft import LoraConfig, get_peft_model

  torch.manual_seed(plan.get("seed", 0))
  config = LoraConfig(
    r=rank,
    lora_alpha=plan["lora_alpha"],
    target_modules=["c_attn"],
    fan_in_fan_out=True,  # GPT-2's Conv1D stores [in, out].
    lora_dropout=0.0,
    bias="none",
  )
  return get_peft_model(model, config)


def trained_state(model: torch.nn.Module) -> dict:
  """What a client sends and the server averages: the trained tensors (the tied head once)."""
  named = dict(model.named_parameters())
  return {k: v.detach().clone() for k, v in named.items() if v.requires_grad}


def load_trained(model: torch.nn.Module, state: dict) -> None:
  named = dict(model.named_parameters())
  with torch.no_grad():
    for key, value in state.items():
      named[key].copy_(value)


def _batches(path: str):
  with np.load(path) as f:
    arrays = {k: f[k] for k in f.files}
  start = 0
  for end in arrays["ends"]:
    keys = ("token_ids", "padding_mask", "labels")
    yield tuple(torch.from_numpy(arrays[k][start:end]).long() for k in keys)
    start = end


def client_batches(data_dir: str, round_num: int, client: int):
  return _batches(os.path.join(data_dir, "batches", f"r{round_num:04d}_c{client:03d}.npz"))


def _loss(model, token_ids, padding_mask, labels):
  logits = model(input_ids=token_ids, attention_mask=padding_mask).logits
  return F.cross_entropy(
    logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE_LABEL
  )


@dataclasses.dataclass
class ClientResult:
  examples: int  # Sequences trained on (FedAvg's weight, as TFF's num_examples).
  tokens: int
  loss_sum: float  # Each batch's mean loss times its tokens, summed.


def train_client(model: torch.nn.Module, batches, plan: dict) -> ClientResult:
  """One client's local work: a fresh optimizer, one step per batch, in order."""
  params = [p for p in model.parameters() if p.requires_grad]
  if plan["optimizer"] == "adam":  # TFF's Adam: betas 0.9 / 0.999, epsilon 1e-7.
    optimizer = torch.optim.Adam(params, lr=plan["learning_rate"], eps=plan.get("epsilon", 1e-7))
  else:
    optimizer = torch.optim.SGD(params, lr=plan["learning_rate"])
  model.train()
  result = ClientResult(0, 0, 0.0)
  for token_ids, padding_mask, labels in batches:
    loss = _loss(model, token_ids, padding_mask, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    tokens = int((labels != IGNORE_LABEL).sum())
    result.examples += int(token_ids.shape[0])
    result.tokens += tokens
    result.loss_sum += float(loss.detach()) * tokens
  return result


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, data_dir: str) -> dict:
  """Mean cross-entropy per held-out token (`eval.npz`), and the token count."""
  model.eval()
  total = tokens = 0
  for token_ids, padding_mask, labels in _batches(os.path.join(data_dir, "eval.npz")):
    n = int((labels != IGNORE_LABEL).sum())
    total += float(_loss(model, token_ids, padding_mask, labels)) * n
    tokens += n
  return {"loss": total / tokens, "tokens": tokens}


def load_hf(path: str, threads: int) -> torch.nn.Module:
  from transformers import GPT2LMHeadModel

  torch.set_num_threads(threads)
  return GPT2LMHeadModel.from_pretrained(path)


def save_final(model: torch.nn.Module, path: str) -> None:
  """The final global model as a Hugging Face directory (LoRA folded in, as tff_gpt's export)."""
  if hasattr(model, "merge_and_unload"):
    model = model.merge_and_unload()
  for block in getattr(getattr(model, "transformer", None), "h", []):
    attn = block.attn
    if isinstance(attn.c_attn, QVAdapters):
      qv = attn.c_attn
      with torch.no_grad():
        h = qv.base.weight.shape[0]
        qv.base.weight[:, :h] += qv.scale * (qv.a_q @ qv.b_q)
        qv.base.weight[:, 2 * h :] += qv.scale * (qv.a_v @ qv.b_v)
      attn.c_attn = qv.base
  model.save_pretrained(path)
