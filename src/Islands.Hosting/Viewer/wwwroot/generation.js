// How the page shows a generation: its images and the routing heatmap.
import { el, svg, PALETTE } from './elements.js';

/** A generation's images, and which expert the router chose for every image at every step. */
export function renderGeneration(g) {
  const images = el('div', { class: 'images', 'data-testid': 'generated-images' },
    ...g.images.map((b64, i) => el('img', { src: `data:image/png;base64,${b64}`, alt: `image ${i}` })));
  const steps = g.routing[0]?.length ?? 0, cell = 10;
  const map = svg('svg', { width: steps * cell + 60, height: g.routing.length * cell + 16, role: 'img', 'aria-label': 'routing heatmap' });
  map.dataset.testid = 'routing-heatmap';
  map.dataset.images = String(g.routing.length);
  map.dataset.steps = String(steps);
  g.routing.forEach((row, i) => row.forEach((expert, s) => {
    const fill = expert < 0 ? '#ddd' : PALETTE[expert % PALETTE.length];
    const rect = svg('rect', { x: 56 + s * cell, y: i * cell, width: cell - 1, height: cell - 1, fill });
    rect.dataset.expert = String(expert);
    const title = svg('title');
    title.textContent = `image ${i}, step ${s + 1}: expert ${expert}`;
    rect.append(title);
    map.append(rect);
  }));
  g.routing.forEach((_, i) => {
    const t = svg('text', { x: 0, y: i * cell + 8, 'font-size': 9, fill: '#5c6670' });
    t.textContent = `image ${i}`;
    map.append(t);
  });
  const experts = [...new Set(g.routing.flat())].filter((k) => k >= 0).sort((a, b) => a - b);
  const legend = el('div', { class: 'legend' }, ...experts.map((k) => {
    const swatch = el('i');
    swatch.style.background = PALETTE[k % PALETTE.length];
    return el('span', {}, swatch, `expert ${k} (${g.imageStepsByExpert[k]} image-steps)`);
  }));
  const facts = el('p', { text: `seed ${g.seed}, ${g.steps} steps, ${g.strategy}, ${g.timings.totalSeconds.toFixed(2)} s` +
    (g.leftOutExperts.length ? `, degraded: experts ${g.leftOutExperts.join(', ')} left out` : '') });
  return el('div', {}, images, el('span', { class: 'label', text: 'Routing (rows: images, columns: steps)' }), el('br'), map, legend, facts);
}
