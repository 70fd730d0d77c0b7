// Live camera: preview in a <video>, capture a frame as a JPEG Blob, release the device.
// Failures become a CameraError whose zh/en text tells the investor what to do.

const MESSAGES = {
  insecure: [
    '摄像头只能在安全连接（HTTPS）下使用，请通过 https:// 开头的网址打开本页面。',
    'The camera only works over a secure connection (HTTPS). Open this page through its https:// address.',
  ],
  unsupported: [
    '当前浏览器无法使用摄像头，请使用最新版的系统浏览器、Safari 或 Chrome。',
    'This browser cannot use the camera. Please use an up-to-date Safari, Chrome or your phone’s own browser.',
  ],
  denied: [
    '摄像头权限被拒绝。请在浏览器或系统设置中允许本网站使用摄像头，然后重试。',
    'Camera permission was denied. Allow this site to use the camera in your browser or system settings, then try again.',
  ],
  not_found: [
    '未找到可用的摄像头，请使用带摄像头的手机或电脑。',
    'No camera was found. Please use a phone or computer with a camera.',
  ],
  in_use: [
    '摄像头正被其他应用占用，请关闭视频通话等使用摄像头的应用后重试。',
    'The camera is being used by another app. Close video calls or other camera apps and try again.',
  ],
  no_frame: [
    '摄像头没有画面，请重试。',
    'The camera shows no picture. Please try again.',
  ],
  failed: [
    '摄像头启动失败，请重试。',
    'The camera could not be started. Please try again.',
  ],
};

export class CameraError extends Error {
  constructor(code, cause) {
    const [zh, en] = MESSAGES[code] || MESSAGES.failed;
    super(en);
    this.name = 'CameraError';
    this.code = code;
    this.message_zh = zh;
    this.cause = cause;
  }
}

/** Map a getUserMedia DOMException to what the investor can do about it. */
export function cameraErrorFrom(err) {
  if (err instanceof CameraError) return err;
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'PermissionDeniedError':
    case 'SecurityError':
      return new CameraError('denied', err);
    case 'NotFoundError':
    case 'DevicesNotFoundError':
    case 'OverconstrainedError':
      return new CameraError('not_found', err);
    case 'NotReadableError':
    case 'TrackStartError':
      return new CameraError('in_use', err);
    default:
      return new CameraError('failed', err);
  }
}

function waitForFrame(video, timeoutMs) {
  if (video.videoWidth > 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new CameraError('no_frame')), timeoutMs);
    video.addEventListener('loadeddata', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

export class Camera {
  constructor(video) {
    this.video = video;
    this.stream = null;
  }

  /** Start the preview; facingMode 'environment' (rear) or 'user' (front). */
  async start(facingMode) {
    if (!window.isSecureContext) throw new CameraError('insecure');
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new CameraError('unsupported');
    }
    this.stop();
    const ideal = {
      facingMode: { ideal: facingMode },
      width: { ideal: 1920 },
      height: { ideal: 1080 },
    };
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ audio: false, video: ideal });
    } catch (err) {
      if (err && err.name !== 'OverconstrainedError') throw cameraErrorFrom(err);
      // Some devices refuse even "ideal" sizes: any camera is better than none.
      try {
        this.stream = await navigator.mediaDevices.getUserMedia({ audio: false, video: true });
      } catch (again) {
        throw cameraErrorFrom(again);
      }
    }
    const video = this.video;
    video.muted = true;
    video.playsInline = true;
    video.srcObject = this.stream;
    try {
      await video.play();
      await waitForFrame(video, 8000);
    } catch (err) {
      this.stop();
      throw cameraErrorFrom(err);
    }
  }

  get active() {
    return this.stream !== null;
  }

  /** The current frame, unmirrored, as a JPEG Blob. */
  capture({ type = 'image/jpeg', quality = 0.92 } = {}) {
    const video = this.video;
    if (!this.stream || video.videoWidth === 0) {
      return Promise.reject(new CameraError('no_frame'));
    }
    const canvas = document.createElement('canvas');
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
    return new Promise((resolve, reject) => {
      canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new CameraError('no_frame'))),
        type, quality);
    });
  }

  /** Release the camera (the indicator light goes off). */
  stop() {
    if (this.stream) {
      for (const track of this.stream.getTracks()) track.stop();
    }
    this.stream = null;
    this.video.srcObject = null;
  }
}
