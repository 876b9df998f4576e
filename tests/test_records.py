import json

import pytest

from secbot.model.errors import ModelError
from secbot.model.training.record_formats import Columns, Record, RecordError, read_records, records_hash, write_records


def test_reads_thudm_json_lines_and_arrays(tmp_path):
    rows = [{"prompt": "q1", "response": "a1", "history": []},
            {"prompt": "q2", "response": "a2", "history": [["q1", "a1"]]},
            {"prompt": "q3", "response": "a3"}]
    lines = tmp_path / "train.json"
    lines.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
    array = tmp_path / "train_array.json"
    array.write_text(json.dumps(rows, indent=2))
    expected = [Record("q1", "a1"), Record("q2", "a2", (("q1", "a1"),)), Record("q3", "a3")]
    assert read_records(lines).records == expected
    assert read_records(array).records == expected


def test_adgen_columns(tmp_path):
    path = tmp_path / "adgen.json"
    path.write_text('{"content": "类型#裙*颜色#红色", "summary": "一条红色的裙子"}\n')
    [record] = read_records(path, Columns("content", "summary", None)).records
    assert record == Record("类型#裙*颜色#红色", "一条红色的裙子")


@pytest.mark.parametrize("bad_line, reason", [
    ('{"prompt": "q"', "invalid JSON"),
    ('{"prompt": "q", "response": ""}', "'response' must be a non-empty string"),
    ('{"prompt": "q", "response": "a", "history": [["only one"]]}', "history"),
    ('["not", "an", "object"]', "expected a JSON object"),
])
def test_malformed_record_names_its_line(tmp_path, bad_line, reason):
    path = tmp_path / "data.jsonl"
    path.write_text('{"prompt": "q", "response": "a"}\n\n' + bad_line + "\n")
    with pytest.raises(RecordError) as err:
        read_records(path)
    assert err.value.line == 3 and reason in str(err.value) and str(path) in str(err.value)
    result = read_records(path, skip_bad=True)
    assert len(result.records) == 1 and [e.line for e in result.skipped] == [3]


def test_malformed_element_of_an_array_names_its_line(tmp_path):
    path = tmp_path / "data.json"
    path.write_text('[\n {"prompt": "q", "response": "a"},\n {"prompt": 5, "response": "a"}\n]')
    with pytest.raises(RecordError, match=r"data.json:3: 'prompt'"):
        read_records(path)


def test_no_usable_records_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(ModelError, match="no usable records"):
        read_records(path)


def test_write_then_read_round_trips_and_hash_is_stable(tmp_path):
    records = [Record("什么是XSS？", "跨站脚本。", (("hi", "hello"),)), Record("q", "a")]
    write_records(tmp_path / "out.jsonl", records)
    assert "什么是XSS" in (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    assert read_records(tmp_path / "out.jsonl").records == records
    assert records_hash(records) == records_hash(list(records))
    assert records_hash(records) != records_hash(records[::-1])


GLM4_CHAT = [  # the layout of GLM-4's fine-tuning data (finetune_demo), one conversation per line
    {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                  {"role": "user", "content": "What is XSS?"},
                  {"role": "assistant", "content": "Cross-site scripting."},
                  {"role": "user", "content": "怎么防御？"},
                  {"role": "assistant", "content": "转义输出，设置 CSP。"}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "Port of "}, {"type": "text", "text": "SSH?"}]},
                  {"role": "assistant", "content": "22/tcp."}]},
]


def test_chat_messages_records_read_as_thudm_ones_and_round_trip(tmp_path):
    path = tmp_path / "chat.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in GLM4_CHAT]
    lines.append(json.dumps({"prompt": "What is MFA?", "response": "Two or more factors.", "history": []}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records = read_records(path).records
    assert records == [Record("怎么防御？", "转义输出，设置 CSP。", (("What is XSS?", "Cross-site scripting."),)),
                       Record("Port of SSH?", "22/tcp."), Record("What is MFA?", "Two or more factors.")]
    out = tmp_path / "out.jsonl"
    assert write_records(out, records, "messages") == 3
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert [m["role"] for m in first["messages"]] == ["user", "assistant", "user", "assistant"]
    assert read_records(out).records == records


@pytest.mark.parametrize("messages, reason", [
    ([{"role": "user", "content": "q"}], "end with an assistant"),
    ([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}], "alternate"),
    ([{"role": "user", "content": "q"}, {"role": "tool", "content": "{}"}, {"role": "assistant", "content": "a"}],
     "tool calling"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}, {"role": "assistant", "content": "a"}],
     "only text parts"),
    ("not a list", "must be a list"),
])
def test_malformed_chat_records_say_why(tmp_path, messages, reason):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": messages}) + "\n")
    with pytest.raises(RecordError, match=reason):
        read_records(path)
