"""A day of dashboard-like data at 15 s in OpenMetrics: 900 node_cpu_seconds_total series (90
CPUs x 10 modes) and a 10-job request_seconds histogram (100 bucket series).
Usage: promql_day.py OUT.om"""
import sys
modes = ["idle","user","system","iowait","irq","softirq","steal","nice","guest","guest_nice"]
les = ["0.005","0.01","0.025","0.05","0.1","0.25","0.5","1.0","2.5","+Inf"]
step, day = 15000, 86400000
with open(sys.argv[1], "w") as f:
    f.write("# TYPE node_cpu_seconds counter\n")
    for cpu in range(90):
        for k, mode in enumerate(modes):
            inc = (k + 1) * 0.1
            for t in range(0, day, step):
                f.write(f'node_cpu_seconds_total{{cpu="{cpu}",mode="{mode}"}} {(t // step) * inc} {t // 1000}.{t % 1000:03d}\n')
    f.write("# TYPE request_seconds histogram\n")
    for job in range(10):
        for k, le in enumerate(les):
            inc = k + 1
            for t in range(0, day, step):
                f.write(f'request_seconds_bucket{{job="j{job}",le="{le}"}} {(t // step) * inc} {t // 1000}.{t % 1000:03d}\n')
    f.write("# EOF\n")
