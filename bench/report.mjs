// Table and SVG rendering for bench/run.mjs (no dependencies).

function fmt(v, unit) {
  if (v === null || v === undefined || Number.isNaN(v)) return 'n/a';
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  const s = v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  return unit ? `${s} ${unit}` : s;
}
export { fmt };

/** Rows: one per (scenario metric, baseline). */
export function tableRows(results) {
  const rows = [];
  for (const sc of results.scenarios) {
    for (const m of sc.metrics) {
      const base = sc.baselines.length ? sc.baselines : [null];
      for (const subj of [sc.subject, ...(sc.variants ?? [])])
      for (const b of base) {
        const value = sc.runs[subj]?.[m.key];
        const bv = b === null ? null : sc.runs[b]?.[m.key];
        const ratio = typeof value === 'number' && typeof bv === 'number' && bv !== 0 ? value / bv : null;
        rows.push({
          scenario: sc.id,
          subject: subj,
          metric: `${m.label} (${m.better} is better)`,
          value: fmt(value, m.unit),
          baseline: b === null ? '-' : b,
          baselineValue: b === null ? '-' : fmt(bv, m.unit),
          ratio: ratio === null ? 'n/a' : `${ratio.toFixed(2)}x`,
        });
      }
    }
  }
  return rows;
}

export function textTable(rows) {
  const cols = [
    ['scenario', 'scenario'],
    ['metric', 'metric'],
    ['subject', 'subject'],
    ['value', 'value'],
    ['baseline', 'baseline'],
    ['baselineValue', 'baseline value'],
    ['ratio', 'ratio'],
  ];
  const w = cols.map(([k, h]) => Math.max(h.length, ...rows.map((r) => String(r[k]).length)));
  const line = (cells) => cells.map((c, i) => String(c).padEnd(w[i])).join(' | ');
  return [line(cols.map((c) => c[1])), w.map((n) => '-'.repeat(n)).join('-|-'), ...rows.map((r) => line(cols.map(([k]) => r[k])))].join('\n');
}

export function markdownTable(rows) {
  const head = '| scenario | metric | subject | value | baseline | baseline value | ratio |\n|---|---|---|---|---|---|---|';
  return [head, ...rows.map((r) => `| ${r.scenario} | ${r.metric} | ${r.subject} | ${r.value} | ${r.baseline} | ${r.baselineValue} | ${r.ratio} |`)].join('\n');
}

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const COLORS = { netmessages: '#d9480f', 'netmessages-fast': '#f59f00', 'netmessages-batch': '#e8590c', dgram: '#1c7ed6', tcp: '#2f9e44', udx: '#7048e8' };

/**
 * Horizontal grouped bars: one group per (scenario, metric), one bar per implementation,
 * scaled to the largest value of that group (units differ between groups).
 */
export function svgChart(results) {
  const groups = [];
  for (const sc of results.scenarios) {
    for (const m of sc.metrics) {
      const bars = [sc.subject, ...(sc.variants ?? []), ...sc.baselines]
        .map((impl) => ({ impl, v: sc.runs[impl]?.[m.key] }))
        .filter((b) => typeof b.v === 'number');
      if (bars.length) groups.push({ title: `${sc.id}: ${m.label} (${m.unit}, ${m.better} is better)`, unit: m.unit, bars });
    }
  }
  const W = 860;
  const labelW = 120;
  const barMax = W - labelW - 170;
  const barH = 16;
  const gap = 4;
  let y = 50;
  const parts = [];
  for (const g of groups) {
    parts.push(`<text x="10" y="${y}" font-size="13" font-weight="bold">${esc(g.title)}</text>`);
    y += 8;
    const max = Math.max(...g.bars.map((b) => b.v), 1e-9);
    for (const b of g.bars) {
      const len = Math.max(1, (b.v / max) * barMax);
      parts.push(`<text x="${labelW - 6}" y="${y + barH - 4}" font-size="12" text-anchor="end">${esc(b.impl)}</text>`);
      parts.push(`<rect x="${labelW}" y="${y}" width="${len.toFixed(1)}" height="${barH}" fill="${COLORS[b.impl] ?? '#868e96'}"/>`);
      parts.push(`<text x="${(labelW + len + 6).toFixed(1)}" y="${y + barH - 4}" font-size="12">${esc(fmt(b.v, g.unit))}</text>`);
      y += barH + gap;
    }
    y += 22;
  }
  const H = y;
  const title = `netmessages benchmarks (${results.mode}, ${results.startedAt}, ${results.machine.cpus} CPUs, node ${results.machine.node})`;
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="10" y="24" font-size="15" font-weight="bold">${esc(title)}</text>
${parts.join('\n')}
</svg>
`;
}
