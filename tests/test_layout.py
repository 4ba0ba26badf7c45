"""The kernels stay free of Apache Beam."""

import subprocess
import sys


def test_kernels_and_event_logic_do_not_import_beam():
    code = (
        "import sys, sketches, drift, drift.report, drift.profile, sketches.serde\n"
        "import ampel_monitor.events, ampel_monitor.window, ampel_monitor.alerts, ampel_monitor.config\n"
        "import ampel_monitor.demo_data, ampel_monitor.io, schemas\n"
        "import ampel_monitor.series, ampel_monitor.remote_write, ampel_monitor.alertmanager, ampel_monitor.elastic\n"
        "assert 'apache_beam' not in sys.modules, sorted(m for m in sys.modules if 'beam' in m)\n"
        "print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
