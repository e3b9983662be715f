"""A simulated day of node_exporter-like data in OpenMetrics, every 15 s: the series of a real
node_exporter 1.5 page; counters climb at per-series rates with jitter, most gauges hold still,
some wander. Usage: node_day.py OUT.om NODE_EXPORTER_PAGE.txt"""
import random, re, sys
random.seed(42)
out, page = sys.argv[1], sys.argv[2]
types, series = {}, []
for line in open(page):
    if line.startswith("# TYPE"):
        _, _, name, typ = line.split()[:4]
        types[name] = typ
    elif line.strip() and not line.startswith("#"):
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)', line)
        if m:
            series.append((m.group(1), m.group(2) or "", float(m.group(3))))
def family(n):
    for suf in ("_total", "_bucket", "_sum", "_count", ""):
        if suf and n.endswith(suf) and n[: -len(suf)] in types:
            return n[: -len(suf)]
    return n
step, day = 15000, 86400000
start = 1_700_000_000_000 // step * step
with open(out, "w") as f:
    by_fam = {}
    for s in series:
        by_fam.setdefault(family(s[0]), []).append(s)
    for fam, ss in by_fam.items():
        f.write(f"# TYPE {fam} unknown\n")
        for name, labels, v in ss:
            typ = types.get(fam, "untyped")
            counter = typ in ("counter", "histogram", "summary") and not labels.count('quantile=')
            kind = random.random()
            rate = abs(v) / 1e6 if v else random.choice([0, 1, 10, 1000])
            integral = float(v).is_integer()
            for i in range(day // step):
                t = start + i * step
                if counter:
                    inc = rate * step / 1000 * random.uniform(0.5, 1.5)
                    v += round(inc) if integral else round(inc, 2)
                elif kind < 0.25:
                    v = round(v + random.uniform(-1, 1) * (abs(v) * 0.01 + 1), 2 if not integral else 0)
                f.write(f"{name}{labels} {v} {t // 1000}\n")
    f.write("# EOF\n")
