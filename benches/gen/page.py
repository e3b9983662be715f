"""A scrape page of N counter series (http_requests_total-like labels, values 0..N-1).
Usage: page.py OUT.txt N"""
import sys
n = int(sys.argv[2])
with open(sys.argv[1], "w") as f:
    f.write("# TYPE http_requests_total counter\n")
    for i in range(n):
        f.write(f'http_requests_total{{method="GET",handler="/api/v{i % 1000}/item",pod="pod-{i // 1000}",code="{200 + i % 5}"}} {i}\n')
