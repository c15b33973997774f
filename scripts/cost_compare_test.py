"""Arithmetic of scripts/cost_compare.py against numbers worked out by hand (run by scripts/checks/cost-compare)."""

import json
import math
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cost_compare as cc  # noqa: E402

# Round numbers so every expected value below can be checked on paper.
MEASURED = cc.Measured(requests_per_s=2.0, p50_ms=900, p95_ms=1500, p99_ms=2000, measured_vcpus=2.0)
PRICES = cc.Prices(
    instance_type="test.xlarge",
    instance_vcpus=4,
    instance_usd_h=0.20,
    alb_usd_h=0.02,
    lcu_usd_h=0.01,
    lcu_new_conn_per_s=25,
    lcu_gb_per_h=1.0,
    lambda_usd_gb_s=0.00001,
    lambda_usd_per_m_req=0.20,
    lambda_mb_per_vcpu=1769,
    lambda_max_vcpus=6,
)
ASSUME = cc.Assumptions(
    target_utilization=0.5,
    min_instances=1,
    max_instances=2,
    bytes_per_request=250_000,
    lambda_memory_mb=3538,  # exactly 2 vCPUs
    lambda_overhead_ms=0,
    lambda_init_ms=2000,
    lambda_idle_reclaim_s=600,
    lambda_env_lifetime_s=1000,
    lambda_concurrency_limit=10,
)


class Arithmetic(unittest.TestCase):
    def test_cpu_seconds_per_image(self):
        # 2 vCPUs / 2 images/s = 1 CPU-second per image.
        self.assertAlmostEqual(MEASURED.cpu_s_per_image(), 1.0)
        # With the single-request p50 given: 0.75 s on 2 vCPUs = 1.5 CPU-seconds.
        m = cc.Measured(2.0, 900, 1500, 2000, 2.0, p50_ms_single=750)
        self.assertAlmostEqual(m.cpu_s_per_image(), 1.5)

    def test_instance_capacity(self):
        # 4 vCPUs / 1 CPU-s per image * 0.5 utilisation = 2 images/s.
        self.assertAlmostEqual(cc.instance_capacity(MEASURED, PRICES, ASSUME), 2.0)

    def test_alb_lcus(self):
        # 5 images/s * 3600 s * 250 kB = 4.5 GB/h = 4.5 LCU; connections 5/25 = 0.2 LCU; max is 4.5.
        self.assertAlmostEqual(cc.alb_lcus(5, PRICES, ASSUME), 4.5)
        # With 1-byte requests the connection dimension wins: 50/25 = 2 LCU.
        tiny = cc.Assumptions(**{**vars(ASSUME), "bytes_per_request": 1})
        self.assertAlmostEqual(cc.alb_lcus(50, PRICES, tiny), 2.0)

    def test_asg_at_5_per_s(self):
        r = cc.compare(5, MEASURED, PRICES, ASSUME)
        # ceil(5 / 2) = 3 instances; 3 * 0.20 + 0.02 + 4.5 * 0.01 = 0.665 $/h.
        self.assertEqual(r.asg_instances, 3)
        self.assertAlmostEqual(r.asg_usd_h, 0.665)
        # 0.665 $/h over 18,000 images/h = 0.0369444 $ per 1,000.
        self.assertAlmostEqual(r.asg_usd_per_1000, 0.665 / 18000 * 1000)
        self.assertAlmostEqual(r.asg_usd_per_1000, 0.036944444, places=8)
        self.assertTrue(r.asg_over_capacity)  # 3 > max 2

    def test_asg_floor(self):
        # 0.1 images/s needs 1 instance = min; 0.2 + 0.02 + max(0.09, 0.004) * 0.01 = 0.2209 $/h.
        r = cc.compare(0.1, MEASURED, PRICES, ASSUME)
        self.assertEqual(r.asg_instances, 1)
        self.assertAlmostEqual(r.asg_usd_h, 0.2209)
        # Exactly at capacity (2 images/s) one instance still suffices.
        self.assertEqual(cc.compare(2.0, MEASURED, PRICES, ASSUME).asg_instances, 1)

    def test_lambda_at_5_per_s(self):
        r = cc.compare(5, MEASURED, PRICES, ASSUME)
        # 3538 MB = 2 vCPUs; 1 CPU-s / 2 = 0.5 s per image.
        self.assertAlmostEqual(r.lambda_duration_ms, 500)
        # Concurrency 5 * 0.5 = 2.5; recycling 2.5 / 1000 s = 0.0025 cold/s; idle term 5 e^-3000 = 0.
        self.assertAlmostEqual(r.lambda_concurrency, 2.5)
        self.assertAlmostEqual(r.lambda_cold_fraction, 0.0005)
        # Per image: 3538/1024 GB * (0.5 s + 0.0005 * 2 s) * 1e-5 + 0.2e-6
        #          = 3.455078125 * 0.501 * 1e-5 + 2e-7 = 1.7309941e-5 + 2e-7 = 1.7509941e-5 $.
        self.assertAlmostEqual(r.lambda_usd_per_1000, 0.017509941406, places=10)
        self.assertAlmostEqual(r.lambda_usd_h, 0.017509941406 / 1000 * 18000, places=9)
        self.assertTrue(r.lambda_over_capacity is False)

    def test_lambda_cold_starts_at_low_rate(self):
        # 1 request per 10 minutes: concurrency 0.05 -> recycling max(1, 0.05)/1000 = 0.001/s;
        # idle term (1/600) * e^-1 = 0.000613132/s; sum / (1/600) = 0.6 + 0.367879 = 0.967879.
        rate = 1 / 600
        frac = cc.lambda_cold_fraction(rate, rate * 0.5, ASSUME)
        self.assertAlmostEqual(frac, 0.6 + math.exp(-1), places=9)
        # Never above 1.
        self.assertEqual(cc.lambda_cold_fraction(1e-5, 0, ASSUME), 1.0)

    def test_lambda_vcpus_capped(self):
        big = cc.Assumptions(**{**vars(ASSUME), "lambda_memory_mb": 10240})
        self.assertAlmostEqual(cc.lambda_vcpus(PRICES, big), 10240 / 1769)
        capped = cc.Prices(**{**vars(PRICES), "lambda_max_vcpus": 4})
        self.assertAlmostEqual(cc.lambda_vcpus(capped, big), 4)

    def test_break_even(self):
        # Here Lambda (0.0175 $/1000) beats the ASG (>= 0.031 $/1000 at any rate): no break-even.
        self.assertIsNone(cc.break_even(MEASURED, PRICES, ASSUME))
        # With instances 10x cheaper: ASG at R <= 2 costs (0.02 + 0.02 + 0.009 R) / (3.6 R) per 1,000,
        # which falls below Lambda's ~0.0175 when 0.04 + 0.009 R < 0.063 R, i.e. R > 0.7407.
        cheap = cc.Prices(**{**vars(PRICES), "instance_usd_h": 0.02})
        be = cc.break_even(MEASURED, cheap, ASSUME)
        self.assertIsNotNone(be)
        self.assertTrue(0.73 < be < 0.76, be)


class EndToEnd(unittest.TestCase):
    def test_cli_writes_table_and_png(self):
        with tempfile.TemporaryDirectory() as d:
            summary = Path(d, "summary.json")
            summary.write_text(json.dumps({"requests_per_s": 2.0, "p50_ms": 900, "p95_ms": 1500, "p99_ms": 2000, "failures": 0}))
            md, png = Path(d, "t.md"), Path(d, "c.png")
            subprocess.run(
                [sys.executable, str(Path(__file__).with_name("cost_compare.py")), "--summary", str(summary),
                 "--p95-ms", "1600", "--rates", "0.1,1,10", "--out-md", str(md), "--out-png", str(png)],
                check=True, capture_output=True,
            )
            text = md.read_text()
            rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| images/s")]
            self.assertEqual([r.split("|")[1].strip() for r in rows], ["0.1", "1", "10"])
            self.assertIn("p95 1600 ms", text)  # the flag overrides the summary
            self.assertEqual(png.read_bytes()[:8], b"\x89PNG\r\n\x1a\n")
            self.assertGreater(png.stat().st_size, 10_000)

    def test_cli_rejects_missing_inputs(self):
        with tempfile.TemporaryDirectory() as d:
            out = subprocess.run(
                [sys.executable, str(Path(__file__).with_name("cost_compare.py")), "--requests-per-s", "2",
                 "--out-md", str(Path(d, "t.md")), "--out-png", str(Path(d, "c.png"))],
                capture_output=True, text=True,
            )
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("missing p50_ms, p95_ms, p99_ms", out.stderr)


if __name__ == "__main__":
    unittest.main()
