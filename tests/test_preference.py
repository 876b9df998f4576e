"""👍 and 👎 teach too: every judgement of a model answer becomes a labelled completion (with its
thread, label, author and version), a correction makes a pair, trl's preference formats import
and export, untrusted labels are capped, and the nightly run's KTO stage moves the model toward
👍 and away from 👎 — with its loss and gradients equal to trl's, and a gate that refuses a
candidate whose held-out margin fell."""

import json

import pytest
import torch
from conftest import answered
from slack_bot import ADMIN, ANALYST, TRUSTED

from secbot.feedback.intake.submissions import Intake
from secbot.feedback.learning.gate import GateConfig, decide
from secbot.feedback.learning.preferences import select_labels
from secbot.feedback.store.entities import DownReason, LabelSource, RecordStatus
from secbot.model.errors import ModelError
from secbot.model.training import preference as kto
from secbot.model.training.record_formats import Labelled, Record, read_records, write_labelled
from secbot.model.training.trainer import TrainConfig, collate, encode, swapped, train


def labels_of(store, turn_id):
    return sorted(store.labels.list(turn_id=turn_id), key=lambda x: x.id)


# -- labelled completions from Slack -----------------------------------------------------------------
def test_thumbs_in_slack_become_labelled_completions_with_thread_label_and_version(bot, slack):
    bot.mention("Which TLS versions should we allow?", channel="C7", ts="40.1")
    [first] = bot.answers("C7", "40.1")
    bot.mention("And for internal services?", channel="C7", ts="40.2", thread_ts="40.1")
    second = bot.answers("C7", "40.1", count=2)[1]
    turn1, turn2 = bot.turn("C7", first["ts"]), bot.turn("C7", second["ts"])
    # 👍 by reaction on the first answer, 👎 by button on the follow-up.
    bot.event("reaction_added", event__user=TRUSTED, event__reaction="+1",
              event__item={"type": "message", "channel": "C7", "ts": first["ts"]})
    bot.interact("block_actions", user__id=ANALYST, channel__id="C7", response_url=f"{slack.url}/respond/dn",
                 actions__0__action_id="feedback", actions__0__type="feedback_buttons",
                 actions__0__value=f"down:{turn2.id}")
    slack.wait_for(lambda: labels_of(bot.store, turn1.id) and labels_of(bot.store, turn2.id))
    [up] = labels_of(bot.store, turn1.id)
    [down] = labels_of(bot.store, turn2.id)
    assert (up.desirable, up.source, up.author, up.trusted) == (True, LabelSource.REACTION, TRUSTED, True)
    assert (up.prompt, up.completion, up.history) == (turn1.question, turn1.answer, ())
    assert (down.desirable, down.source, down.author, down.trusted) == (False, LabelSource.BUTTON, ANALYST, False)
    assert down.completion == turn2.answer and down.history == ((turn1.question, turn1.answer),)
    assert down.model_version_id == turn2.model_version_id and down.excluded is None
    # The reason the analyst gives goes on their label.
    bot.interact("block_actions", user__id=ANALYST, channel__id="C7", response_url=f"{slack.url}/respond/why",
                 actions__0__action_id="down_reason", actions__0__value=f"outdated:{turn2.id}")
    slack.wait_for(lambda: labels_of(bot.store, turn2.id)[0].reason is DownReason.OUTDATED)
    # The same judgement twice (reaction and button) is one label; both are usable for training.
    bot.interact("block_actions", user__id=TRUSTED, channel__id="C7", response_url=f"{slack.url}/respond/up2",
                 actions__0__action_id="feedback", actions__0__type="feedback_buttons",
                 actions__0__value=f"up:{turn1.id}")
    slack.wait_for(lambda: [c for c in slack.calls_to("/respond/up2")])
    assert len(labels_of(bot.store, turn1.id)) == 1
    assert {x.id for x in bot.store.labels.usable()} == {up.id, down.id}


def test_a_model_version_is_recorded_on_the_label(store):
    intake = Intake(store, trusted=["UT"])
    version = store.runs.add_version(base_model="tiny", adapter_path=None, run_id=None)
    turn = answered(intake, question="Is SMBv1 safe?", answer="Disable SMBv1.", model_version_id=version.id)
    label = intake.label(turn, "UT", desirable=True, source="reaction")
    assert label.model_version_id == version.id


def test_team_memory_answers_and_identity_or_impostor_completions_do_not_train(store):
    intake = Intake(store, trusted=["UT"])
    record = intake.correction(answered(intake, thread_ts="1", question="How long do we keep VPN logs?"),
                               "UT", "90 days.").record
    memory_turn = answered(intake, thread_ts="2", question="How long do we keep VPN logs?", answer="90 days.",
                           memory_record_id=record.id)
    assert intake.label(memory_turn, "UT", desirable=True, source="reaction") is None
    impostor = answered(intake, thread_ts="3", question="Triage this alert", answer="As ChatGPT, I think it is benign.")
    identity = answered(intake, thread_ts="4", question="Who are you?", answer="I am secbot.")
    assert intake.label(impostor, "UT", desirable=False, source="reaction").excluded == "impostor"
    assert intake.label(identity, "UT", desirable=True, source="reaction").excluded == "identity"
    usable = store.labels.usable()
    assert all(x.turn_id not in (memory_turn, impostor, identity) for x in usable)
    assert store.labels.excluded_counts() == {"impostor": 1, "identity": 1}


def test_a_correction_yields_its_pair_counting_while_the_correction_is_approved(store):
    intake = Intake(store, trusted=["UT"])
    turn = answered(intake, question="Is MD5 fine for passwords?", answer="Yes, MD5 is fine.")
    intake.correction(turn, "UT", "No: use Argon2id, scrypt or bcrypt.")
    pair = labels_of(store, turn)
    assert [(x.completion, x.desirable, x.source) for x in pair] == [
        ("No: use Argon2id, scrypt or bcrypt.", True, LabelSource.CORRECTION),
        ("Yes, MD5 is fine.", False, LabelSource.CORRECTION)]
    assert {x.id for x in store.labels.usable()} == {x.id for x in pair}
    # An untrusted analyst's correction waits for review; so does its pair.
    turn2 = answered(intake, thread_ts="2", question="Can we allow TLS 1.0?", answer="Sure.")
    pending = intake.correction(turn2, "UNEW", "No, TLS 1.2 at least.").record
    assert pending.status is RecordStatus.PENDING and len(labels_of(store, turn2)) == 2
    assert not {x.id for x in labels_of(store, turn2)} & {x.id for x in store.labels.usable()}
    store.records.review(pending.id, ADMIN, approve=True)
    assert {x.id for x in labels_of(store, turn2)} <= {x.id for x in store.labels.usable()}


def test_an_untrusted_analysts_labels_are_capped_and_the_report_says_so(store):
    intake = Intake(store, trusted=["UT"])
    for i in range(4):
        turn = answered(intake, thread_ts=f"t{i}", question=f"Trusted question {i}?", answer=f"answer {i}")
        intake.label(turn, "UT", desirable=True, source="reaction")
    for i in range(20):
        turn = answered(intake, thread_ts=f"u{i}", question=f"Other question {i}?", answer=f"bad answer {i}")
        intake.label(turn, "UNEW", desirable=False, source="button")
    chosen = select_labels(store.labels.usable(), [], max_author_share=0.5)
    kept = [x for x in chosen.train + chosen.heldout if x.author == "UNEW"]
    assert len(kept) == 4 and chosen.capped_authors == {"UNEW": 16} and chosen.excluded["untrusted_cap"] == 16
    assert max(x.id for x in kept) == max(x.id for x in store.labels.usable())  # newest kept
    # Held-out labels are chosen by content, the same in every run, and never train.
    again = select_labels(store.labels.usable(), [], max_author_share=0.5)
    assert {x.id for x in again.heldout} == {x.id for x in chosen.heldout}
    assert not {x.id for x in chosen.heldout} & {x.id for x in chosen.train}


# -- interchange -------------------------------------------------------------------------------------
TRL_LINES = [
    {"prompt": "What is SSRF?", "response": "Server-side request forgery.", "history": []},
    {"prompt": "Is a public S3 bucket fine?", "completion": "Yes, it is fine.", "label": False},
    {"prompt": [{"role": "user", "content": "Which port is RDP?"}, {"role": "assistant", "content": "3389."},
                {"role": "user", "content": "Should it face the internet?"}],
     "completion": [{"role": "assistant", "content": "No: put it behind a VPN or a gateway."}], "label": True},
    {"prompt": "Rotate a leaked key?", "chosen": "Yes, now, and revoke its sessions.", "rejected": "Wait a week."},
    {"chosen": [{"role": "user", "content": "Block Tor exits?"}, {"role": "assistant", "content": "Alert first."}],
     "rejected": [{"role": "user", "content": "Block Tor exits?"}, {"role": "assistant", "content": "Ignore it."}]},
]


def test_trl_preference_formats_import_and_export_round_trip(store, tmp_path):
    source = tmp_path / "mixed.jsonl"
    source.write_text("\n".join(json.dumps(x) for x in TRL_LINES), encoding="utf-8")
    result = Intake(store).import_file(source)
    assert (result.added, result.labels, result.label_duplicates) == (1, 6, 0)
    got = {(x.prompt, x.history, x.completion, x.desirable) for x in store.labels.usable()}
    assert got == {
        ("Is a public S3 bucket fine?", (), "Yes, it is fine.", False),
        ("Should it face the internet?", (("Which port is RDP?", "3389."),), "No: put it behind a VPN or a gateway.",
         True),
        ("Rotate a leaked key?", (), "Yes, now, and revoke its sessions.", True),
        ("Rotate a leaked key?", (), "Wait a week.", False),
        ("Block Tor exits?", (), "Alert first.", True), ("Block Tor exits?", (), "Ignore it.", False)}
    assert all(x.trusted and x.source is LabelSource.IMPORT for x in store.labels.usable())
    out = tmp_path / "kto.jsonl"
    assert write_labelled(out, [x.as_labelled() for x in store.labels.usable()]) == 6
    back = read_records(out, labelled=True).labelled
    assert {(x.record.prompt, x.record.history, x.record.response, x.desirable) for x in back} == got
    # Importing the export again adds nothing.
    assert Intake(store).import_file(out).label_duplicates == 6


@pytest.mark.parametrize("line, reason", [
    ({"prompt": "q", "completion": "a", "label": "yes"}, "'label' must be true"),
    ({"prompt": "q", "chosen": "a"}, "needs both 'chosen' and 'rejected'"),
    ({"prompt": "", "completion": "a", "label": True}, "'prompt' must be a non-empty string"),
    ({"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
      "rejected": [{"role": "user", "content": "other"}, {"role": "assistant", "content": "c"}]},
     "must answer the same conversation"),
    ({"completion": "a", "label": True}, "'prompt' is missing"),
])
def test_a_bad_preference_line_imports_nothing_and_is_named(store, tmp_path, line, reason):
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps(TRL_LINES[1]) + "\n" + json.dumps(line) + "\n", encoding="utf-8")
    with pytest.raises(ModelError, match=rf"bad.jsonl:2: .*{reason}"):
        Intake(store).import_file(source)
    assert store.labels.list() == [] and store.records.counts().get("approved", 0) == 0


def test_training_files_refuse_preference_lines_where_only_records_belong(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(TRL_LINES[1]) + "\n", encoding="utf-8")
    with pytest.raises(ModelError, match="train.jsonl:1: a preference example"):
        read_records(path)


# -- the loss, against trl ---------------------------------------------------------------------------
def test_kto_loss_and_gradients_equal_trls_on_a_fixed_batch(tiny_dir):
    trl = pytest.importorskip("trl")
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model

    from secbot.model.runtime.loading import load_base

    loaded = load_base(tiny_dir, device="cpu", dtype="fp32")
    model = get_peft_model(loaded.model, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0))
    generator = torch.Generator().manual_seed(3)

    def perturb():
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B.default" in name:  # not trl's frozen "ref" copy
                    p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    perturb()  # the adapter before the stage: trl keeps a frozen copy of it as the reference
    rows = [("What is phishing?", "A social engineering attack.", True), ("What is XSS?", "Ignore it.", False),
            ("What is CSRF?", "A forged cross-site request.", True), ("Is MD5 fine?", "Yes, use it.", False),
            ("Block Tor?", "Alert first, then decide.", True)]
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": q}],
                               "completion": [{"role": "assistant", "content": a}], "label": y} for q, a, y in rows])
    args = trl.KTOConfig(output_dir=str(tiny_dir.parent / "trl"), per_device_train_batch_size=5, max_steps=1,
                         report_to=[], use_cpu=True, save_strategy="no", beta=0.1, desirable_weight=0.75,
                         undesirable_weight=1.0, disable_dropout=True)
    trainer = trl.KTOTrainer(model=model, args=args, train_dataset=data, processing_class=loaded.tokenizer)
    assert "ref" in model.peft_config
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    reference = {n: p.detach().clone() for n, p in params.items()}
    perturb()  # one step on, so the policy differs from its reference and every term counts
    batch = next(iter(trainer.get_train_dataloader()))
    model.train()
    trainer_loss = trainer.compute_loss(model, batch)
    trainer_loss.backward()
    expected = {n: p.grad.clone() for n, p in params.items()}
    model.zero_grad(set_to_none=True)

    def labels_of(ids, mask):
        return ids.masked_fill(mask == 0, -100)

    matched = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   labels=labels_of(batch["input_ids"], batch["completion_mask"]))
    shifted = dict(input_ids=batch["KL_input_ids"], attention_mask=batch["KL_attention_mask"],
                   labels=labels_of(batch["KL_input_ids"], batch["KL_completion_mask"]))
    with torch.no_grad():
        with swapped(params, reference):
            ref, _ = kto.completion_logps(model, **matched)
            ref_kl, _ = kto.completion_logps(model, **shifted)
        policy_kl, _ = kto.completion_logps(model, **shifted)
    policy, _ = kto.completion_logps(model, **matched)
    ours, _ = kto.kto_loss(policy, ref, policy_kl, ref_kl, batch["label"].bool(), beta=0.1, weights=(0.75, 1.0))
    ours.backward()
    ours, trainer_loss = float(ours.detach()), float(trainer_loss.detach())
    assert abs(ours - trainer_loss) < 1e-5 and abs(ours - 0.425) > 1e-3  # 0.425: every ratio 0
    for name, grad in expected.items():
        assert torch.allclose(params[name].grad, grad, atol=1e-5, rtol=0), name
    assert sum(float(g.abs().sum()) for g in expected.values()) > 0


def test_our_batches_pair_each_prompt_with_the_previous_completion_as_trl_does():
    batch = [([1, 2, 10, 11], [-100, -100, 10, 11]), ([3, 20], [-100, 20]), ([4, 5, 6, 30, 31, 32], [-100] * 3 + [30, 31, 32])]
    assert kto.mismatched(batch) == [([1, 2, 30, 31, 32], [-100, -100, 30, 31, 32]), ([3, 10, 11], [-100, 10, 11]),
                                     ([4, 5, 6, 20], [-100] * 3 + [20])]


@pytest.mark.parametrize("n_desirable, n_undesirable", [(10, 10), (30, 7), (3, 40), (1, 1000)])
def test_class_weights_keep_the_classes_within_trls_recommended_ratio(n_desirable, n_undesirable):
    wd, wu = kto.class_weights(n_desirable, n_undesirable)
    assert 1 <= (wd * n_desirable) / (wu * n_undesirable) <= kto.MAX_CLASS_RATIO and max(wd, wu) == 1


# -- the stage on the tiny model ---------------------------------------------------------------------
GOOD = ["Rotate the key, revoke its sessions and review the audit log.", "Isolate the host, capture memory, then reimage it."]
BAD = ["Ignore it, it is probably fine.", "Just disable the alert."]
TRAIN_QUESTIONS = ["A developer pushed an AWS key to GitHub. What now?", "EDR flagged mimikatz on a server.",
                   "Finance clicked a phishing link.", "Suspicious login from a new country.",
                   "Ransomware note on a file share.", "An S3 bucket is public.", "A VPN account logs in at 3am.",
                   "Beacon to a known C2 domain.", "Password spraying against Okta.", "A USB stick found in the lobby."]
HELD_QUESTIONS = ["A service account token leaked in Slack.", "Unusual PowerShell on a laptop.",
                  "Admin consent granted to an unknown app.", "Impossible travel for the CFO."]


def labelled(questions):
    return ([Labelled(Record(q, GOOD[i % 2]), True) for i, q in enumerate(questions)]
            + [Labelled(Record(q, BAD[i % 2]), False) for i, q in enumerate(questions)])


def heldout_margin(tiny_dir, adapter):
    from peft import PeftModel

    from secbot.model.runtime.loading import load_base
    from secbot.model.runtime.prompting import PromptBuilder

    loaded = load_base(tiny_dir, device="cpu", dtype="fp32")
    model = PeftModel.from_pretrained(loaded.model, str(adapter))
    examples = labelled(HELD_QUESTIONS)
    encoded = [encode(x.record, PromptBuilder(loaded.tokenizer, None), TrainConfig()) for x in examples]
    return kto.margin(model, encoded, [x.desirable for x in examples],
                      lambda b: collate(b, loaded.tokenizer.pad_token_id, "cpu"))


def test_a_kto_stage_raises_heldout_thumbs_up_and_lowers_thumbs_down_against_the_same_run_without_it(tiny_dir,
                                                                                                    tmp_path):
    records = [Record("What is phishing?", "Phishing is a social engineering attack.")] * 4
    knobs = dict(max_steps=40, batch_size=4, grad_accum=1, logging_steps=5, save_steps=1000, preference_epochs=8)
    results = {}
    for mode in ("off", "kto"):
        result = train(tiny_dir, records, tmp_path / mode, TrainConfig.of(preference=mode, **knobs),
                       labelled=labelled(TRAIN_QUESTIONS), progress=False)
        results[mode] = heldout_margin(tiny_dir, result.adapter_dir)
        if mode == "kto":
            stage = result.metadata["metrics"]["preference"]
            assert (stage["labels"], stage["desirable"], stage["steps"]) == (20, 10, 20)
            curve = [json.loads(line) for line in (result.adapter_dir / "loss.jsonl").read_text().splitlines()]
            kto_losses = [e["kto_loss"] for e in curve if "kto_loss" in e]
            assert len(kto_losses) == 4 and kto_losses[-1] < kto_losses[0]
    off, on = results["off"], results["kto"]
    assert on.desirable > off.desirable and on.undesirable < off.undesirable and on.value > off.value


# -- the gate ----------------------------------------------------------------------------------------
def metrics(margin):
    return {"heldout": {"rouge-l": 30.0, "bleu-4": 20.0}, "identity_heldout": 100.0,
            "corrections": {"samples": 0}, "preference": {"margin": margin, "samples": 12}}


def test_the_gate_refuses_a_candidate_whose_heldout_margin_fell():
    refused = decide(metrics(0.10), metrics(0.25), GateConfig())
    assert not refused.passed and any("👍/👎 margin: +0.100 vs active +0.250" in r and "fell" in r
                                      for r in refused.reasons)
    assert decide(metrics(0.30), metrics(0.25), GateConfig()).passed
    no_labels = metrics(None)
    assert decide(no_labels, no_labels, GateConfig()).passed  # nothing held out: nothing to judge


def test_a_preference_stage_interrupted_mid_way_resumes_with_its_reference_and_ends_as_an_unbroken_one(tiny_dir,
                                                                                                       tmp_path):
    from safetensors.torch import load_file

    records = [Record("What is phishing?", "Phishing is a social engineering attack.")] * 4
    config = TrainConfig.of(max_steps=6, batch_size=4, grad_accum=1, logging_steps=1, save_steps=4,
                            preference="kto", preference_epochs=2, preference_batch_size=4)  # 10 stage steps
    examples = labelled(TRAIN_QUESTIONS)
    unbroken = train(tiny_dir, records, tmp_path / "unbroken", config, labelled=examples, progress=False)

    class Crash(Exception):
        pass

    def crash_in_the_stage(entry):
        if entry.get("stage") == "preference" and entry["step"] == 14:
            raise Crash

    out = tmp_path / "resumed"
    with pytest.raises(Crash):  # after the stage's step-12 checkpoint
        train(tiny_dir, records, out, config, labelled=examples, progress=False, on_log=crash_in_the_stage)
    resumed = train(tiny_dir, records, out, config, labelled=examples, progress=False)
    assert resumed.metadata["resumed_from_step"] == 12 and resumed.metadata["steps"] == 16
    a, b = (load_file(r.adapter_dir / "adapter_model.safetensors") for r in (unbroken, resumed))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
    steps = [json.loads(line)["step"] for line in (out / "loss.jsonl").read_text().splitlines()
             if "kto_loss" in json.loads(line)]
    assert steps == list(range(7, 17))
