/** Renders rows of strings as an aligned text table, CSV (RFC 4180) or a Markdown table. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[], format: 'table' | 'csv' | 'markdown'): string {
  if (format === 'csv') return [header, ...rows].map((row) => row.map(csvField).join(',')).join('\n') + '\n';
  if (format === 'markdown') {
    const escape = (cell: string): string => cell.replace(/\|/g, '\\|');
    const line = (row: readonly string[]): string => `| ${row.map(escape).join(' | ')} |`;
    return [line(header), `|${header.map(() => '---').join('|')}|`, ...rows.map(line)].join('\n') + '\n';
  }
  const widths = header.map((_, column) => Math.max(...[header, ...rows].map((row) => (row[column] ?? '').length)));
  const line = (row: readonly string[]): string => row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd();
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n') + '\n';
}

function csvField(value: string): string {
  return /[",\n\r]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}
