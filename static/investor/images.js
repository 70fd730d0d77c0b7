// Steps 3 and 4: ID card images (A17.1) and the live frontal photo (A14).
// Each tile photographs (in-page camera) or picks a file, uploads it as the raw body of
// PUT /application/documents/{kind} and shows what the server stored.

import { $, $$ } from '../js/dom.js';
import { bi, onLangChange, t } from '../js/i18n.js';
import { closeCamera, takePhoto } from './capture.js';
import { clearAlert, showAlert } from './ui.js';

const ALLOWED = new Set(['image/jpeg', 'image/png', 'image/webp']);
const MAX_EDGE = 2560;

const CAMERA = {
  id_front: {
    title: ['拍摄人像面', 'Photograph the photo side'],
    hint: ['将证件人像面放入框内，四角完整、字迹清晰、无反光', 'Fit the photo side inside the frame: all corners visible, text sharp, no glare'],
    alt: ['证件人像面照片', 'Photo side of the document'],
  },
  id_back: {
    title: ['拍摄国徽面', 'Photograph the emblem side'],
    hint: ['将证件国徽面放入框内，四角完整、字迹清晰、无反光', 'Fit the emblem side inside the frame: all corners visible, text sharp, no glare'],
    alt: ['证件国徽面照片', 'Emblem side of the document'],
  },
  frontal_photo: {
    title: ['拍摄正面照', 'Take your face photo'],
    hint: ['请正对镜头，面部位于椭圆框内，摘下帽子和眼镜', 'Look straight at the camera with your face inside the oval; no hat or glasses'],
    alt: ['本人正面照', 'Your face photo'],
  },
};
const FALLBACK = {
  card: ['您也可以关闭后点击“从相册选择”上传证件照片。', 'You can also close this and use “Choose file” to upload a photo of the document.'],
  face: ['正面照须现场拍摄。请允许摄像头权限后重试，或换用带摄像头的设备。', 'The face photo must be taken live. Allow camera access and try again, or use a device with a camera.'],
};
const UNREADABLE = {
  zh: '无法读取该图片，请选择 JPG、PNG 或 WebP 格式的照片。',
  en: 'This image cannot be read. Please choose a JPG, PNG or WebP photo.',
};

function canvasBlob(canvas, quality) {
  return new Promise((resolve, reject) => {
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('encode'))), 'image/jpeg', quality);
  });
}

/** Files the server would refuse for size or type are re-encoded here as a JPEG. */
async function prepare(file, maxBytes) {
  if (ALLOWED.has(file.type) && file.size <= maxBytes) return file;
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, MAX_EDGE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement('canvas');
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  let blob = await canvasBlob(canvas, 0.9);
  if (blob.size > maxBytes) blob = await canvasBlob(canvas, 0.75);
  return blob;
}

export function setupImages(ctx, step) {
  const section = $(`#step-${step}`);
  const tiles = $$('.tile', section);
  const next = $('[data-next]', section);

  function stored(kind) {
    return ctx.app && ctx.app.documents ? ctx.app.documents[kind] : null;
  }

  function render(tile) {
    const kind = tile.dataset.kind;
    const doc = stored(kind);
    const img = $('.tile-img', tile);
    const badge = $('.tile-badge', tile);
    $('[data-action=camera]', tile).replaceChildren(
      doc ? bi('重拍', 'Retake') : bi('拍照', 'Take photo'),
    );
    img.alt = t(...CAMERA[kind].alt);
    if (doc) {
      // The stored, re-encoded image; the hash busts any cache after a retake.
      const src = `${ctx.api.base}/application/documents/${kind}?v=${doc.sha256.slice(0, 16)}`;
      if (img.getAttribute('src') !== src) img.src = src;
      img.hidden = false;
      $('.placeholder', tile).hidden = true;
      badge.replaceChildren(bi('✓ 已上传', '✓ Uploaded'));
      badge.hidden = false;
    } else {
      img.removeAttribute('src');
      img.hidden = true;
      $('.placeholder', tile).hidden = false;
      badge.hidden = true;
    }
    tile.classList.toggle('is-stored', Boolean(doc));
  }

  function renderAll() {
    tiles.forEach(render);
    next.disabled = !tiles.every((tile) => stored(tile.dataset.kind));
  }

  function setBusy(tile, on) {
    tile.classList.toggle('is-uploading', on);
    tile.setAttribute('aria-busy', String(on));
    for (const control of $$('button, input', tile)) control.disabled = on;
    $('.file-btn', tile)?.classList.toggle('disabled', on);
  }

  async function upload(tile, file) {
    const kind = tile.dataset.kind;
    const alertBox = $('.alert', tile);
    clearAlert(alertBox);
    let blob;
    try {
      blob = await prepare(file, ctx.config.imageMaxBytes);
    } catch {
      showAlert(alertBox, UNREADABLE);
      return;
    }
    const preview = URL.createObjectURL(blob);
    const img = $('.tile-img', tile);
    img.src = preview;
    img.hidden = false;
    $('.placeholder', tile).hidden = true;
    $('.tile-badge', tile).replaceChildren(bi('上传中…', 'Uploading…'));
    $('.tile-badge', tile).hidden = false;
    setBusy(tile, true);
    next.disabled = true;
    try {
      const body = await ctx.api.putBlob(`/application/documents/${kind}`, blob, {
        timeoutMs: 120000,
      });
      ctx.setApp(body.application);
    } catch (err) {
      showAlert(alertBox, err);
    } finally {
      setBusy(tile, false);
      renderAll();
      setTimeout(() => URL.revokeObjectURL(preview), 1000);
    }
  }

  for (const tile of tiles) {
    const kind = tile.dataset.kind;
    $('[data-action=camera]', tile).addEventListener('click', async () => {
      const blob = await takePhoto({
        facing: tile.dataset.facing,
        shape: tile.dataset.shape,
        title: CAMERA[kind].title,
        hint: CAMERA[kind].hint,
        fallback: FALLBACK[tile.dataset.shape],
      });
      if (blob) await upload(tile, blob);
    });
    const input = $('input[type=file]', tile);
    if (input) {
      input.addEventListener('change', () => {
        const file = input.files && input.files[0];
        input.value = '';
        if (file) upload(tile, file);
      });
    }
    $('.tile-img', tile).addEventListener('error', () => {
      if (!stored(kind) || tile.classList.contains('is-uploading')) return;
      showAlert($('.alert', tile), {
        zh: '照片已保存，但预览加载失败。', en: 'The photo is saved but its preview could not be loaded.',
      });
    });
  }
  onLangChange(renderAll);

  return {
    enter() {
      for (const tile of tiles) clearAlert($('.alert', tile));
      renderAll();
    },
    leave() {
      closeCamera();
    },
  };
}
