// What an 18-character ID number tells the form (GB 11643-1999). Only a convenience:
// the server validates everything again and its answer is the one shown.

const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK_CHARS = '10X98765432';
const PERMIT_REGIONS = { 810000: 'HKG', 820000: 'MAC', 830000: 'TWN' };

export const NATIONALITIES = {
  CHN: ['中国', 'China'],
  HKG: ['中国香港', 'Hong Kong, China'],
  MAC: ['中国澳门', 'Macao, China'],
  TWN: ['中国台湾', 'Taiwan, China'],
};

/** Full-width digits/X to ASCII, spaces dropped, a final x upper-cased. */
export function normalizeIdNumber(raw) {
  let text = String(raw || '')
    .replace(/[０-９]/g, (d) => String(d.charCodeAt(0) - 0xff10))
    .replace(/[Ｘｘ]/g, 'X')
    .replace(/[ \u3000]+/g, '');
  if (text.endsWith('x')) text = `${text.slice(0, -1)}X`;
  return text;
}

/** {birthDate: 'yyyy-mm-dd', sex: 'M'|'F'} for a well-formed number, else null. */
export function decodeIdNumber(raw) {
  const number = normalizeIdNumber(raw);
  if (!/^[0-9]{17}[0-9X]$/.test(number)) return null;
  const total = WEIGHTS.reduce((sum, w, i) => sum + w * Number(number[i]), 0);
  if (CHECK_CHARS[total % 11] !== number[17]) return null;
  const y = Number(number.slice(6, 10));
  const m = Number(number.slice(10, 12));
  const d = Number(number.slice(12, 14));
  const date = new Date(Date.UTC(y, m - 1, d));
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== m - 1 || date.getUTCDate() !== d) {
    return null;
  }
  return {
    birthDate: `${number.slice(6, 10)}-${number.slice(10, 12)}-${number.slice(12, 14)}`,
    sex: Number(number[16]) % 2 === 1 ? 'M' : 'F',
  };
}

/** CHN for a resident ID; HKG/MAC/TWN from a residence permit's prefix; '' if unknown. */
export function nationalityOf(documentType, raw) {
  if (documentType === 'resident_id') return 'CHN';
  const prefix = normalizeIdNumber(raw).slice(0, 6);
  return PERMIT_REGIONS[prefix] || '';
}
