// The status page served at /: one self-contained HTML document (inline CSS, script and SVG; no
// external assets, since the device may have no internet). Its script fetches /status, /devices
// and /aggregates every 2 s and draws throughput, backlog and drain ETA, the uplink's state, and a
// chart of one device's aggregates. With a token configured, the page takes it from the URL
// fragment (/#token=...), which browsers never send to the server (so it is in no log), keeps it
// in the tab's sessionStorage and sends it as "Authorization: Bearer"; the page itself carries no
// data and is served without the token.
//
// Thread-safety: returns a constant.
#pragma once

#include <string_view>

namespace gw::gateway {

std::string_view status_page_html();

}  // namespace gw::gateway
