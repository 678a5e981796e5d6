"use strict";
// The login page: a QR code to scan with the app, polled until it is scanned, confirmed,
// or expired (then a click gets a new one); a code sent by SMS when the platform asks.
(function () {
  const image = document.querySelector("img.qr");
  const expired = document.querySelector(".qr-expired");
  const status = document.querySelector(".qr-status");
  const sms = document.getElementById("sms");
  let token = "", polling = 0;

  async function showQr() {
    clearInterval(polling);
    sms.hidden = true;
    expired.hidden = true;
    const answer = await (await fetch("/passport/web/get_qrcode/", { credentials: "same-origin" })).json();
    token = answer.data.token;
    image.src = `data:image/png;base64,${answer.data.qrcode}`;
    image.dataset.token = token;
    status.textContent = "请使用抖音 App 扫码登录";
    polling = setInterval(check, 500);
  }

  async function check() {
    const answer = await (await fetch(`/passport/web/check_qrconnect/?token=${encodeURIComponent(token)}`, { credentials: "same-origin" })).json();
    const data = answer.data;
    if (data.status === "2") status.textContent = "已扫码，请在手机上确认";
    else if (data.status === "5") { clearInterval(polling); expired.hidden = false; status.textContent = "二维码已失效"; }
    else if (data.status === "verify") {
      clearInterval(polling);
      sms.hidden = false;
      sms.querySelector(".sms-prompt").textContent = `为了您的账号安全，请输入发送至 ${data.mobile} 的验证码`;
      sms.querySelector("input").focus();
    } else if (data.status === "3") { clearInterval(polling); window.location.href = data.redirect_url; }
  }

  sms.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = sms.querySelector("input");
    const answer = await (await fetch("/passport/web/sms_verify/", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token, code: input.value }),
    })).json();
    if (answer.message === "success") { window.location.href = answer.data.redirect_url; return; }
    sms.querySelector(".sms-error").textContent = answer.data.description;
    input.value = "";
    if (answer.data.error_code === 1203) { await showQr(); status.textContent = answer.data.description; }
  });
  document.querySelector(".refresh").addEventListener("click", showQr);
  showQr();
})();
