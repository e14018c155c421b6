/**
 * Photos need the bearer header (GET /v1/photos/{id} shows a photo only to whoever may see it), so the console
 * fetches each one and shows it from a blob: URL, once per photo per session. Uploads go through
 * XMLHttpRequest, the one browser API that reports an upload's progress.
 */
import { ok, useApi, errorOf, type Photo } from "./client";
import { ApiError } from "./problem";

const shown = new Map<string, Promise<string>>();

/** A URL the page can show the photo from. */
export function photoUrl(photoId: string): Promise<string> {
  let url = shown.get(photoId);
  if (url === undefined) {
    url = ok(useApi().intake.GET("/v1/photos/{photo_id}", { params: { path: { photo_id: photoId } }, parseAs: "blob" }))
      .then((blob) => URL.createObjectURL(blob));
    url.catch(() => shown.delete(photoId));  // a failure is not remembered: the next look asks again
    shown.set(photoId, url);
  }
  return url;
}

/** Forget every photo shown (on sign-out: the next caller may not see them). */
export function forgetPhotos(): void {
  for (const url of shown.values()) {
    url.then((u) => URL.revokeObjectURL(u), () => undefined);
  }
  shown.clear();
}

/** POST intake's /v1/photos with the file, reporting progress (0–1); resolves with the stored photo. */
export function uploadPhoto(file: File, token: string, progress: (fraction: number) => void,
  idempotencyKey: string = crypto.randomUUID()): Promise<Photo> {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", new URL("/v1/photos", useApi().urls.intake));
    request.setRequestHeader("Authorization", `Bearer ${token}`);
    request.setRequestHeader("Accept", "application/json");
    // A retry of the same upload (after a lost answer) stores nothing twice.
    request.setRequestHeader("Idempotency-Key", idempotencyKey);
    request.responseType = "text";
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) {
        progress(event.loaded / event.total);
      }
    };
    request.onload = () => {
      const body = parseJson(request.responseText);
      if (request.status === 201 || request.status === 200) {
        progress(1);
        resolve(body as Photo);
        return;
      }
      const headers = new Headers();
      for (const name of ["Retry-After", "X-Request-Id"]) {
        const value = request.getResponseHeader(name);
        if (value !== null) {
          headers.set(name, value);
        }
      }
      reject(errorOf(new Response(null, { status: request.status, headers }), body));
    };
    request.onerror = () => reject(new ApiError(0, null));
    request.ontimeout = () => reject(new ApiError(0, null));
    request.timeout = 120_000;
    const form = new FormData();
    form.append("file", file, file.name);
    request.send(form);
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
