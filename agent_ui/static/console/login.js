import { api } from "./api.js";

const form = document.getElementById("login-form");
const error = document.getElementById("login-error");
form.addEventListener("submit", async (e) => {
  e.preventDefault();
  error.textContent = "";
  const username = document.getElementById("username").value.trim();
  const password = document.getElementById("password").value;
  if (!username || !password) { error.textContent = "Enter your username and password."; return; }
  try {
    await api("POST", "/api/auth/login", { username, password });
    // Back where the login was asked for (/admin/queues, say): a path on this site only.
    const next = new URLSearchParams(location.search).get("next") || "";
    location.href = /^\/(?![\/\\])/.test(next) ? next : "/console";
  } catch (err) {
    error.textContent = err.message || "Could not log in.";
  }
});
