"""What every headless run writes into its --out directory."""

OUTPUTS = (
    "summary.json", "report.html", "requests.csv", "over_time.png", "throughput_vs_latency.png",
    "locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv",
    "locust_exceptions.csv",
)  # fmt: skip
