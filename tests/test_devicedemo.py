"""The full demo (./run-demo, updater.host.devicedemo) runs end to end: publish, serve, provision,
upgrade over HTTP, reboot into the trial, confirm, status."""

import os

from updater.host import devicedemo


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert devicedemo.main([str(tmp_path / "work")]) == 0
    out = capsys.readouterr().out
    pulled = [line for line in out.split("\n") if line.strip().startswith("Pulled") and "version 2.0" in line]
    assert pulled and "delta" in pulled[0], pulled  # v2 came as a static delta over HTTP
    assert "trial boot of" in out and "it is now the known-good deployment" in out
    assert "running, known-good" in out and "rollback target" in out
    assert "/etc/hostname survived the update: 'kitchen-sensor'" in out
    assert "0 problems" in out
    assert os.path.isdir(str(tmp_path / "work" / "device" / "updater" / "deploy"))
