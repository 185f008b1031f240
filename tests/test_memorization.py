"""The memorization audit: canaries planted, exposure as the Secret Sharer defines it, membership AUC."""

import csv
import json
import os

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics

from tests import helpers
from tff_gpt import errors, memorization
from tff_gpt.algorithms import privacy
from tff_gpt.comparison import report as comparison_report
from tff_gpt.data import canaries, pairs, tokenizers
from tff_gpt.settings import ConfigError
from tff_gpt.training import audit, cohorts, outputs, report, trainer


def test_exposure_is_log2_of_the_space_minus_log2_of_the_rank():
  # Carlini et al. 2019, Definition 3: exposure = log2 |R| - log2 rank, rank 1 the likeliest secret.
  scores = np.array([5.0, 1.0, 3.0, 2.0, 8.0, 6.0, 7.0, 4.0])  # |R| = 8 log-perplexities.
  assert memorization.exposure_exact(1.0, scores) == 3.0  # Rank 1: log2 8.
  assert memorization.exposure_exact(3.0, scores) == pytest.approx(3 - np.log2(3))  # Rank 3.
  assert memorization.exposure_exact(8.0, scores) == 0.0  # Rank 8, the least likely.


def test_extrapolated_exposure_agrees_with_the_exact_rank_on_a_skew_normal_space():
  space = stats.skewnorm.rvs(4.0, loc=30, scale=5, size=200_000, random_state=np.random.default_rng(0))
  sample = np.random.default_rng(1).choice(space, 4096, replace=False)
  for quantile in (1e-2, 1e-3, 1e-4):
    score = np.quantile(space, quantile)
    exact = memorization.exposure_exact(score, space)  # About -log2(quantile).
    assert exact == pytest.approx(-np.log2(quantile), abs=0.1)
    assert memorization.exposure_extrapolated(score, sample) == pytest.approx(exact, abs=0.6)


def test_membership_auc_and_tpr_at_one_percent_fpr_are_scikit_learns():
  members, others = [1.0, 1.2, 2.5, 0.8], [2.0, 3.0, 2.8, 1.1, 3.5]
  got = memorization.membership(members, others)
  # Lower loss ranks as a member: 17 of the 20 member/non-member pairs are ordered right.
  assert got["auc"] == pytest.approx(17 / 20)
  assert got["tpr_at_1pct_fpr"] == 0.5  # Two members below every non-member's loss.
  truth = [1] * 4 + [0] * 5
  assert got["auc"] == pytest.approx(metrics.roc_auc_score(truth, -np.array(members + others)))


def test_canaries_are_distinct_planted_per_repeat_count_and_only_in_training_text():
  plan = canaries.draw(4, [1, 3], ["a", "b"], digits=4, prefix="my number is", seed=0)
  assert len({c.secret for c in plan.canaries}) == 14
  assert len({c.owner for c in plan.canaries}) == 14  # Each its own owner: they do not compete.
  assert plan.text(plan.canaries[0]).startswith(f"{plan.canaries[0].owner}: my number is ")
  assert [c.repeats for c in plan.canaries] == [1, 3, 1, 3] + [0] * 10
  assert [c.client for c in plan.inserted] == ["a", "b", "a", "b"]
  texts = {"a": [f"a{i}" for i in range(5)], "b": [f"b{i}{pairs.PAIR_MARK}r{i}" for i in range(5)]}
  planted = canaries.insert(texts, plan, seed=0)
  for c in plan.canaries:
    text = plan.text(c)
    assert sum(text in e for es in planted.values() for e in es) == c.repeats
  assert all(pairs.split(e)[1].startswith(f"r{e[1]}") for e in planted["b"])  # In the response, after it.
  with pytest.raises(errors.UserInputError, match=r"repeated 30 times needs client 'a' to have that many"):
    canaries.insert(texts, canaries.draw(1, [30], ["a"], digits=4, prefix="p", seed=0), seed=0)
  words = tokenizers.WordTokenizer(["my", "number", "is"])
  with pytest.raises(
    errors.UserInputError, match="The tokenizer cannot encode the canary 'kaka: my number is"
  ):
    canaries.check_encodable(words, plan)


TEXTS = ["the cat sat on the mat", "a dog ran in the park", "we had tea at noon", "it rained all day"]


def _config(tmp_path, **overrides):
  corpus = {f"c{k}": [f"{TEXTS[(k + i) % 4]} {i % 3}" for i in range(20)] for k in range(5)}
  values = dict(
    dataset_path=helpers.write_jsonl_corpus(tmp_path / "corpus.jsonl", corpus),
    canaries=2,
    canary_repeats="12",
    canary_digits=3,
    canary_clients=2,
    clients_per_eval=1,
    clients_per_round=3,
    total_rounds=40,
    rounds_per_eval=40,
    rounds_per_checkpoint=40,
    client_optimizer="adam",
    client_learning_rate=0.01,
    client_epochs_per_round=4,
    max_elements_per_client=64,
    sequence_length=32,
    model_size="2x32",
    membership_clients=3,
  )
  return helpers.tiny_config(tmp_path, **(values | overrides))


def test_a_canary_planted_many_times_is_memorized_and_a_never_planted_one_is_not(tmp_path):
  helpers.ensure_tff_context()
  experiment = trainer.FederatedExperiment(_config(tmp_path))
  summary = experiment.run()
  plan = canaries.Plan.from_json(json.load(open(os.path.join(experiment.dirs.results, audit.PLAN_FILE))))
  evaluated = set(experiment.task.eval_client_ids)
  assert {c.client for c in plan.inserted}.isdisjoint(evaluated)
  held_out = [e for es in experiment.task.test_data.texts.values() for e in es]
  assert not any(plan.prefix in e for e in held_out)  # Never in held-out text.
  assert plan.to_json() == canaries.Plan.from_json(plan.to_json()).to_json()
  with open(summary["canaries_csv"], newline="") as f:
    rows = list(csv.DictReader(f))
  exposure = summary["canary_exposure"]
  bits = np.log2(1000)
  assert summary["canary_space_bits"] == pytest.approx(bits)
  planted = [float(r["exposure"]) for r in rows if r["repeats"] == "12"]
  # One ranked near the top of 1,000, both within its top 8 (each after its own owner: no competition).
  assert len(planted) == 2 and max(planted) > bits - 1.5 and min(planted) > bits - 3, rows
  assert exposure["0"]["mean_exposure"] < 2.5, exposure  # 10 random secrets: 1.44 bits expected (log2 e).
  assert len(rows) == 12 and {r["method"] for r in rows} == {"exact"}
  # Each canary's participation, against the run's own record of each round's aggregated clients.
  sampled = outputs.read_sampled_clients(experiment.dirs)
  for r in rows:
    rounds = [n for n, ids in sampled.items() if r["client"] and r["client"] in ids]
    assert (int(r["rounds_aggregated"]), int(r["last_round"])) == (len(rounds), max(rounds, default=0))
  assert exposure["12"]["mean_rounds_aggregated"] > 0 and "mean_rounds_aggregated" not in exposure["0"]
  assert "canary exposure (bits of 10.0" in report.format_summary(summary)
  columns = comparison_report.audit_columns(summary)  # What a comparison's report.csv adds per run.
  assert columns["canary_top_repeats"] == 12 and columns["canary_exposure_top"] == pytest.approx(
    np.mean(planted), abs=1e-3
  )
  assert "note" in summary["membership"] and columns["membership_auc"] == ""  # Every client was sampled.


def test_canary_settings_that_cannot_work_stop_the_run_before_round_1(tmp_path):
  with pytest.raises(errors.UserInputError, match="and have the 500 examples --canary_repeats needs"):
    trainer.FederatedExperiment(_config(tmp_path, canary_repeats="500"))
  with pytest.raises(errors.UserInputError, match="training clients are not evaluation clients"):
    trainer.FederatedExperiment(_config(tmp_path, clients_per_eval=None, canary_clients=2))
  with pytest.raises(errors.UserInputError, match="--population=1 but the corpus has 5 training clients"):
    trainer.FederatedExperiment(_config(tmp_path, population=1))  # Below its 2 canary clients.
  with pytest.raises(errors.UserInputError, match="--population=6 but"):
    trainer.FederatedExperiment(_config(tmp_path, population=6))
  with pytest.raises(ConfigError, match="--canary_repeats must be comma-separated counts"):
    _config(tmp_path, canary_repeats="1,ten").validate()


def test_membership_attack_compares_the_clients_rounds_sampled_with_those_never_sampled(tmp_path):
  helpers.ensure_tff_context()
  config = _config(
    tmp_path, canaries=0, total_rounds=2, clients_per_round=1, rounds_per_eval=2, membership_clients=5
  )
  experiment = trainer.FederatedExperiment(config)
  summary = experiment.run()
  with open(os.path.join(experiment.dirs.results, "sampled_clients.csv"), newline="") as f:
    sampled = {cid for row in csv.DictReader(f) for cid in cohorts.parse_ids(row["client_ids"])}
  m = summary["membership"]
  assert m["members"] == len(sampled) and m["non_members"] == 5 - len(sampled) > 0
  assert 0 <= m["auc"] <= 1 and "membership attack on" in report.format_summary(summary)


def test_a_population_trains_its_canary_client_and_a_sample_and_the_rest_never_train(tmp_path):
  helpers.ensure_tff_context()
  overrides = dict(canaries=1, canary_clients=1, population=3, total_rounds=2, rounds_per_eval=2)
  config = _config(
    tmp_path, **overrides, clients_per_round=2, client_epochs_per_round=1, membership_clients=5
  )
  experiment = trainer.FederatedExperiment(config)
  run = experiment.context
  trained = run.task.train_data.client_ids
  assert len(trained) == 3 and run.task.canary_plan.inserted[0].client in trained
  # DP accounting samples 2 of the 3 a round, not of the corpus's 5.
  assert run.dp_epsilon(10) == privacy.epsilon(
    noise_multiplier=1.0, sampling_rate=2 / 3, rounds=10, delta=1e-5
  )
  summary = experiment.run()
  with open(os.path.join(experiment.dirs.results, "sampled_clients.csv"), newline="") as f:
    sampled = {cid for row in csv.DictReader(f) for cid in cohorts.parse_ids(row["client_ids"])}
  assert sampled <= set(trained)
  m = summary["membership"]  # The two clients outside the population are non-members, beside any unsampled.
  assert m["members"] == len(sampled) and m["non_members"] == 5 - len(sampled)
