// The dashboards page: reads /admin/api/dashboards/{name} (the same JSON as the API),
// draws it with the vendored Apache ECharts (global `echarts`) and fills the table with the
// same rows. No inline script (the console's CSP): texts come from data-labels.
(function () {
  "use strict";

  function pivot(rows, xKey, seriesKey, value) {
    var xs = [], names = [], cells = {};
    rows.forEach(function (row) {
      var x = String(row[xKey]), s = seriesKey ? String(row[seriesKey]) : "";
      if (xs.indexOf(x) < 0) xs.push(x);
      if (names.indexOf(s) < 0) names.push(s);
      var key = x + "\u0000" + s, cell = cells[key] || (cells[key] = [0, 0]);
      var v = value(row);
      cell[0] += v[0];
      cell[1] += v.length > 1 ? v[1] : 1;
    });
    return { xs: xs, names: names, cells: cells };
  }

  function seriesOf(p, type, ratio, stack) {
    return p.names.map(function (name) {
      return {
        name: name, type: type, stack: stack, emphasis: { focus: "series" },
        data: p.xs.map(function (x) {
          var cell = p.cells[x + "\u0000" + name];
          if (!cell) return null;
          return ratio ? (cell[1] ? Math.round((1000 * cell[0]) / cell[1]) / 10 : null) : cell[0];
        }),
      };
    });
  }

  // Times are shown in Taipei, whatever the browser's own zone is.
  function taipei(iso) {
    var lang = document.documentElement.lang || "zh-TW";
    return new Date(iso).toLocaleString(lang, { timeZone: "Asia/Taipei", hour12: false });
  }

  function sum(key) { return function (row) { return [Number(row[key]) || 0]; }; }
  function rate(part, whole) {
    return function (row) { return [Number(row[part]) || 0, Number(row[whole]) || 0]; };
  }

  // What each dashboard draws; every chart sums the table's rows.
  var CHARTS = {
    topics: function (rows) {
      var p = pivot(rows, "month", "category", sum("hours"));
      return { xs: p.xs, series: seriesOf(p, "bar", false, "hours") };
    },
    compliance: function (rows) {
      var p = pivot(rows, "agency", "requirement", rate("met", "people"));
      return { xs: p.xs, series: seriesOf(p, "bar", true), percent: true };
    },
    reminders: function (rows, t) {
      var a = pivot(rows, "month", null, rate("reminded_completed", "reminded"));
      var b = pivot(rows, "month", null, rate("not_reminded_completed", "not_reminded"));
      var series = seriesOf(a, "bar", true).concat(seriesOf(b, "bar", true));
      if (series[0]) series[0].name = t["column.reminded_rate"];
      if (series[1]) series[1].name = t["column.not_reminded_rate"];
      return { xs: a.xs, series: series, percent: true };
    },
    search: function (rows, t) {
      var top = rows.filter(function (r) { return r.kind === "top"; }).reverse();
      var p = pivot(top, "query", null, sum("searches"));
      var series = seriesOf(p, "bar", false);
      if (series[0]) series[0].name = t["column.searches"];
      return { xs: p.xs, series: series, horizontal: true };
    },
    campaigns: function (rows, t) {
      var steps = ["eligible", "opened", "verified", "claimed"];
      return {
        xs: rows.map(function (r) { return r.title || r.campaign; }),
        series: steps.map(function (s) {
          return { name: t["column." + s], type: "bar", data: rows.map(function (r) { return r[s]; }) };
        }),
      };
    },
    channels: function (rows) {
      var p = pivot(rows, "week", "channel", sum("active_members"));
      return { xs: p.xs, series: seriesOf(p, "line", false) };
    },
  };

  function draw(chart, name, body, t) {
    var c = CHARTS[name](body.rows, t);
    var category = { type: "category", data: c.xs };
    var values = { type: "value", axisLabel: c.percent ? { formatter: "{value}%" } : {} };
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { type: "scroll", top: 0 },
      grid: { left: 8, right: 16, top: 40, bottom: 8, containLabel: true },
      xAxis: c.horizontal ? values : category,
      yAxis: c.horizontal ? category : values,
      series: c.series,
    }, true);
  }

  function fill(table, body, t) {
    var head = table.tHead, rows = table.tBodies[0];
    head.innerHTML = "";
    rows.innerHTML = "";
    var tr = head.insertRow();
    body.columns.forEach(function (col) {
      var th = document.createElement("th");
      th.textContent = t["column." + col] || col;
      tr.appendChild(th);
    });
    body.rows.forEach(function (row) {
      var line = rows.insertRow();
      body.columns.forEach(function (col) {
        var v = row[col];
        line.insertCell().textContent = v === null || v === undefined ? "" : String(v);
      });
    });
  }

  function start() {
    var root = document.getElementById("dashboard");
    if (!root || typeof echarts === "undefined") return;
    var name = root.dataset.name, t = JSON.parse(root.dataset.labels || "{}");
    var form = document.getElementById("dashboard-filters");
    var status = document.getElementById("dashboard-status");
    var csv = document.getElementById("dashboard-csv");
    var chart = echarts.init(document.getElementById("dashboard-chart"));
    window.addEventListener("resize", function () { chart.resize(); });

    function load() {
      var params = new URLSearchParams();
      new FormData(form).forEach(function (value, key) {
        if (String(value).trim() !== "") params.set(key, String(value).trim());
      });
      var url = "/admin/api/dashboards/" + encodeURIComponent(name) + "?" + params.toString();
      csv.href = url + "&format=csv";
      status.textContent = t.loading;
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (!r.ok) throw new Error(String(r.status));
          return r.json();
        })
        .then(function (body) {
          draw(chart, name, body, t);
          fill(document.getElementById("dashboard-table"), body, t);
          status.textContent = body.rows.length
            ? (body.as_of ? t.as_of + " " + taipei(body.as_of) + " " + t.taipei_time : "")
            : t.empty;
          root.dataset.drawn = "true"; // for the browser test: the chart is drawn
        })
        .catch(function () { status.textContent = t.failed; });
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      load();
    });
    load();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
