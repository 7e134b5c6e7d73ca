// An hourly bar chart as inline SVG: one bar per hour, labelled axes, a <title>
// per bar (the browser's tooltip) and a text summary for screen readers.
import {h, svg} from './dom.js';

export function hourlyChart(buckets, {field, label, format = String}) {
  const width = 720;
  const height = 220;
  const pad = {left: 64, right: 12, top: 12, bottom: 36};
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const values = buckets.map((bucket) => Number(bucket[field]) || 0);
  const max = Math.max(1, ...values);
  const slot = plotW / Math.max(1, buckets.length);
  const total = values.reduce((sum, value) => sum + value, 0);
  const hourText = (ms) => new Date(ms).toISOString().slice(11, 16);
  const dayText = (ms) => new Date(ms).toISOString().slice(0, 10);

  const bars = buckets.map((bucket, idx) => {
    const value = values[idx];
    const barH = Math.max(value > 0 ? 1 : 0, (value / max) * plotH);
    const x = pad.left + idx * slot + slot * 0.15;
    return svg('rect', {
      class: 'bar', x: x.toFixed(1), y: (pad.top + plotH - barH).toFixed(1),
      width: Math.max(1, slot * 0.7).toFixed(1), height: barH.toFixed(1),
    }, svg('title', {}, `${dayText(bucket.start_ms)} ${hourText(bucket.start_ms)} UTC: ${format(value)}`));
  });
  const ticks = [0, 0.5, 1].map((share) => {
    const y = pad.top + plotH - share * plotH;
    return [
      svg('line', {class: 'gridline', x1: pad.left, x2: width - pad.right, y1: y, y2: y}),
      svg('text', {class: 'axis', x: pad.left - 6, y: y + 4, 'text-anchor': 'end'}, format(Math.round(max * share))),
    ];
  });
  const every = Math.max(1, Math.ceil(buckets.length / 8));
  const labels = buckets.map((bucket, idx) => (idx % every === 0 || idx === buckets.length - 1)
    ? svg('text', {class: 'axis', x: (pad.left + idx * slot + slot / 2).toFixed(1), y: height - pad.bottom + 16,
      'text-anchor': 'middle'}, hourText(bucket.start_ms))
    : null);
  const summary = buckets.length
    ? `${label} per hour, ${dayText(buckets[0].start_ms)} ${hourText(buckets[0].start_ms)} to ` +
      `${hourText(buckets[buckets.length - 1].start_ms)} UTC: ${format(total)} in all, at most ${format(Math.max(...values))} in one hour.`
    : `${label}: no data.`;
  return h('figure', {class: 'chart'},
    svg('svg', {viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': summary, class: 'chart-svg'},
      ticks, bars, labels,
      svg('text', {class: 'axis', x: pad.left + plotW / 2, y: height - 4, 'text-anchor': 'middle'}, 'hour (UTC)')),
    h('figcaption', {}, summary));
}
