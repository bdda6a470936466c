"""The pool's torch-free bookkeeping (ids, rows, phases, validity) and the model-state accessors."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cozoo
from cozoo.continual.state import StateLayout
from cozoo.inference.slots import SlotError, SlotSchedule, SlotTable, emits, next_phase, phase


def test_slots_module_imports_without_torch():
    path = Path(__file__).parents[1] / "cozoo" / "inference" / "slots.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('slots', {str(path)!r})\n"
        "module = sys.modules['slots'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_emits_and_phases_follow_a_lone_streams_schedule():
    # first output at frame 5, then every 3rd frame (as a lone stream of that schedule gives)
    assert [n for n in range(15) if emits(n, 5, 3)] == [5, 8, 11, 14]
    settle, period = 8, 3
    phases = [phase(n, settle, period) for n in range(16)]
    assert phases == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 8, 9, 10, 8, 9]
    assert all(next_phase(phase(n, settle, period), settle, period) == phase(n + 1, settle, period)
               for n in range(40))


def test_slot_table_ids_rows_and_plans():
    table = SlotTable(3, {"valid": SlotSchedule(first_output=2, stride=2, settle=4, period=2)}, "valid")
    a, b = table.open(), table.open()
    assert (a, b) == (0, 1) and table.live == [0, 1]
    plan = table.plan([a])
    assert plan.fresh_rows == (0, 1)  # both opened since the last step
    assert [(g.warmup, g.phase, g.rows, g.others_live) for g in plan.groups] == [("valid", 0, (0,), True)]
    table.commit(plan)
    plan = table.plan([a, b])
    assert plan.fresh_rows == ()
    assert [(g.phase, g.rows) for g in plan.groups] == [(0, (1,)), (1, (0,))]
    assert plan.frame_index == {0: 1, 1: 0} and plan.valid == {0: False, 1: False}
    table.commit(plan)
    for _ in range(3):
        table.commit(table.plan([a, b]))
    plan = table.plan([a, b])  # a has seen 5 frames, b 4: phases 5 and 4
    assert [(g.phase, g.rows, g.others_live) for g in plan.groups] == [(4, (1,), True), (5, (0,), True)]
    assert plan.valid == {0: False, 1: True}
    table.commit(plan)
    table.commit(table.plan([b]))  # now a 6 and b 6
    plan = table.plan([a, b])
    assert [(g.phase, g.rows, g.others_live) for g in plan.groups] == [(4, (0, 1), False)]
    table.close(a)
    c = table.open()
    assert c == 2 and table.row(c) == 0  # the free row, a new id
    table.reset(b)
    assert table.frames_seen(b) == 0 and table.plan([c]).fresh_rows == (0, 1)
    with pytest.raises(SlotError, match="stream 0 is closed"):
        table.plan([a])
    with pytest.raises(SlotError, match="unknown stream id 7"):
        table.reset(7)
    with pytest.raises(SlotError, match="given twice"):
        table.plan([b, b])
    table.open()
    with pytest.raises(SlotError, match="the pool is full: all 3 streams"):
        table.open()
    with pytest.raises(ValueError, match="capacity must be a positive int"):
        SlotTable(0, {"valid": SlotSchedule(0, 1, 1, 1)}, "valid")


def test_slot_table_warmup_modes_schedule_and_group_apart():
    """Each stream follows its own mode's schedule; streams of two modes never share a group."""
    schedules = {"valid": SlotSchedule(first_output=5, stride=2, settle=7, period=2),
                 "padded": SlotSchedule(first_output=2, stride=2, settle=4, period=2)}
    table = SlotTable(3, schedules, "padded")
    a, b = table.open(), table.open("valid")
    assert (table.warmup(a), table.warmup(b)) == ("padded", "valid")
    emitted: dict[int, list[int]] = {a: [], b: []}
    for _ in range(9):
        plan = table.plan([a, b])
        assert len(plan.groups) == 2 and {g.warmup for g in plan.groups} == {"padded", "valid"}
        for stream_id in (a, b):
            row = table.row(stream_id)
            if plan.valid[row]:
                emitted[stream_id].append(plan.frame_index[row])
        table.commit(plan)
    assert emitted == {a: [2, 4, 6, 8], b: [5, 7]}
    table.reset(a, "valid")  # a new mode from its next frame on
    assert table.warmup(a) == "valid" and table.plan([a, b]).fresh_rows == (table.row(a),)
    plan = table.plan([a])
    assert [(g.warmup, g.phase) for g in plan.groups] == [("valid", 0)]
    table.reset(b)  # keeps its mode
    assert table.warmup(b) == "valid"
    with pytest.raises(ValueError, match="warmup must be one of \\['padded', 'valid'\\], got 'same'"):
        table.open("same")
    with pytest.raises(ValueError, match="warmup must be one of"):
        table.reset(a, "zero")
    assert table.live == [a, b] and table.warmup(a) == "valid"
    with pytest.raises(ValueError, match="bad schedule"):
        SlotSchedule(first_output=-1, stride=1, settle=0, period=1)


def test_state_layout_counters_and_unknown_state():
    model = cozoo.to_continual(torch.nn.Sequential(torch.nn.Conv3d(3, 2, 3, stride=(2, 1, 1)))).eval()
    layout = StateLayout(model)
    start = layout.counters()
    with torch.no_grad():
        for _ in range(3):
            model.forward_step(torch.randn(2, 3, 6, 6))
    moved = layout.counters()
    assert moved != start and [key for key, _, _ in layout.tensors()] == [(1, "_state", -1)]
    layout.set_counters(start)
    assert layout.counters() == start
    layout.check_known_state()
    model[0].__dict__["_cache"] = torch.zeros(2)
    with pytest.raises(TypeError, match="CoConv3d keeps tensor state in '_cache'"):
        layout.check_known_state()


def test_state_layout_warmup_and_initial_values():
    """The value a layout reports for each state tensor is the one the module allocated it with: after two
    steps the oldest entry of each 3-frame cache still holds it (the conv's zeros, the max pool's -inf)."""
    source = torch.nn.Sequential(torch.nn.Conv3d(3, 8, (3, 1, 1), padding=(1, 0, 0)),
                                 torch.nn.MaxPool3d((3, 1, 1), stride=1, padding=(1, 0, 0)))
    model = cozoo.to_continual(source).eval()
    model.reset(warmup="padded")
    layout = StateLayout(model)
    with torch.no_grad():
        for _ in range(2):  # the pool gets its first input at the second step (the conv's first output)
            model.forward_step(torch.randn(2, 3, 4, 4))
    seen = {key: (tensor, layout.initial_value(key)) for key, tensor, _ in layout.tensors()}
    assert [value for _, value in seen.values()] == [0.0, -math.inf]
    for tensor, value in seen.values():
        assert bool((tensor[:, :, 0] == value).all())  # an entry no step has written yet
    pool = layout.modules[2]
    assert torch.equal(pool.new_state(torch.zeros(1), 2, 1), torch.full((2, 1), -math.inf))
    assert model.first_output == 2  # padded: each layer's padding frame stands in front of the stream
    layout.set_warmup("valid")
    assert model.warmup == "valid" and model.first_output == 4
    assert [t.data_ptr() for _, t, _ in layout.tensors()] == [t.data_ptr() for t, _ in seen.values()]
