import { AgentError } from '../shared/rpc-errors.js';
import type { DocumentFormat } from './extraction.js';

const BY_CONTENT_TYPE: Readonly<Record<string, DocumentFormat>> = {
  'application/pdf': 'pdf',
  'text/csv': 'csv',
  'application/csv': 'csv',
  'application/json': 'json',
  'text/json': 'json',
  'text/plain': 'text',
  'text/markdown': 'text',
};

const BY_EXTENSION: Readonly<Record<string, DocumentFormat>> = {
  pdf: 'pdf', csv: 'csv', json: 'json', txt: 'text', text: 'text', md: 'text', log: 'text',
};

/** The extension of a file name, lower-case, without the dot ('' when none). */
export function extensionOf(filename: string): string {
  const dot = filename.lastIndexOf('.');
  return dot <= 0 ? '' : filename.slice(dot + 1).toLowerCase();
}

/**
 * Picks the parser from the declared content type, falling back to the file extension for generic
 * types (application/octet-stream). Content that contradicts the choice is caught by the parser.
 */
export function detectFormat(contentType: string, filename: string): DocumentFormat {
  const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  const byType = BY_CONTENT_TYPE[type];
  if (byType !== undefined) return byType;
  const byExtension = BY_EXTENSION[extensionOf(filename)];
  if (byExtension !== undefined && (type === 'application/octet-stream' || type === '')) return byExtension;
  throw new AgentError('unsupported_format', `unsupported content type '${type}' (supported: PDF, CSV, JSON, plain text)`, { content_type: type });
}
