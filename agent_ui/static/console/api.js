// The REST API, with the session cookie. A 401 sends the agent to the login page.
export class ApiError extends Error {
  constructor(status, body) {
    super(errorText(body) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.body = body;
  }
}

// What an error answer says: `detail` is a string, or for a 422 a list of {loc, msg, type}.
function errorText(body) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d) && d.length && typeof d[0].msg === "string") return d.map((e) => e.msg).join("; ");
  return null;
}

export async function api(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body instanceof FormData) {
    init.body = body; // a file upload: the browser sets the multipart type and boundary
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401 && !path.startsWith("/api/auth/login")) {
    location.href = `/login?next=${encodeURIComponent(location.pathname)}`;
    throw new ApiError(401, null);
  }
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}
