"use strict";
const STATES={{states}};
const $=id=>document.getElementById(id);
function el(tag,text,cls){const e=document.createElement(tag);
 if(text!==undefined&&text!==null)e.textContent=String(text);if(cls)e.className=cls;return e;}
function clear(e){while(e.firstChild)e.removeChild(e.firstChild);}
function clamped(text,cls){const d=el("td",null,"txt"+(cls?" "+cls:""));d.title=text;
 d.appendChild(el("div",text,"clamp"));return d;}
function day(epoch){const d=el("td",null,"nw day");const w=when(epoch);if(w==="-"){d.textContent=w;
 return d;}d.appendChild(el("span",w.slice(0,11),"date"));d.appendChild(document.createTextNode(
 w.slice(11)));return d;}
function when(epoch){
 return epoch?new Date(epoch*1000).toISOString().slice(0,19).replace("T"," "):"-";}
async function get(url){
 const r=await fetch(url,{credentials:"same-origin",headers:{"Accept":"application/json"}});
 let body=null;try{body=await r.json();}catch(e){}
 if(!r.ok)throw new Error((body&&body.error)||("HTTP "+r.status));return body;}
function problem(e){const b=$("error");if(e){b.textContent=String(e.message||e);
 b.style.display="block";}else{b.style.display="none";}}
for(const s of STATES){const o=el("option",s);o.value=s;$("state").appendChild(o);}
function drawCounts(counts){const c=$("counts");clear(c);for(const s of STATES){
 const d=el("div",null,"count");d.dataset.state=s;d.appendChild(el("b",counts[s]||0));
 d.appendChild(el("span",s));c.appendChild(d);}}
const NS="http://www.w3.org/2000/svg";
function svg(tag,attrs,text){const e=document.createElementNS(NS,tag);
 for(const k in attrs)e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=text;return e;}
let shown=null;
function drawChart(ch){shown=ch;const g=$("chart");clear(g);const H=160,L=34,B=20,T=8;
 const W=Math.max(240,Math.round(g.getBoundingClientRect().width))||600;
 g.setAttribute("viewBox","0 0 "+W+" "+H);const n=ch.completed.length;if(!n)return;
 const top=Math.max(1,...ch.completed,...ch.failed);const w=(W-L-4)/n;
 const y=v=>H-B-(H-B-T)*v/top;
 g.appendChild(svg("line",{x1:L,y1:H-B,x2:W,y2:H-B,stroke:"#9aa3b5"}));
 g.appendChild(svg("text",{x:L-4,y:T+8,"text-anchor":"end","font-size":10},String(top)));
 g.appendChild(svg("text",{x:L-4,y:H-B,"text-anchor":"end","font-size":10},"0"));
 for(let i=0;i<n;i++){const x=L+i*w;
  for(const [k,col,dx] of [["completed","#2e9d4f",0],["failed","#d23a3a",w/2]]){const v=ch[k][i];
   if(!v)continue;const r=svg("rect",{x:x+dx,y:y(v),width:Math.max(w/2-0.5,0.5),
   height:H-B-y(v),fill:col,"data-kind":k});
   r.appendChild(svg("title",{},when(ch.since+i*ch.bucket)+" "+k+": "+v));g.appendChild(r);}}
 for(const m of [0,15,30,45,60]){const x=L+(W-L-4)*m/60;
  g.appendChild(svg("text",{x:x,y:H-5,"text-anchor":"middle","font-size":10},
   m===60?"now":"-"+(60-m)+"m"));}
 g.lastChild.setAttribute("text-anchor","end");}
function drawFailures(list,unreadable){const t=$("failures");clear(t);
 if(!list.length){const r=el("tr");const d=el("td",unreadable?"cannot read them: "+unreadable:
  "none","muted");d.colSpan=3;r.appendChild(d);
  t.appendChild(r);return;}
 for(const f of list){const r=el("tr");r.dataset.code=f.code;r.appendChild(el("td",f.code,"nw"));
  r.appendChild(el("td",f.count));r.appendChild(clamped(f.meaning||"-"));t.appendChild(r);}}
function ago(s){s=Math.round(s);const h=Math.floor(s/3600),m=Math.floor(s%3600/60);
 return h?h+"h "+m+"m":m?m+"m "+(s%60)+"s":s+"s";}
function pauseText(p){if(!p)return "no";return "paused"+(p.every_site?" (every site)":"")+
 " since "+when(p.since)+" UTC, for "+ago(p.seconds)+(p.reason?": "+p.reason:"");}
function drawFlow(f){const head=$("flowhead");clear(head);const hr=el("tr");
 for(const c of ["site",...f.priorities.map(p=>"waiting "+p),"dispatched","in flight / cap",
  "paused"])hr.appendChild(el("th",c));head.appendChild(hr);
 const t=$("flowrows");clear(t);for(const s of f.sites){const tr=el("tr");tr.dataset.site=s.site;
  tr.appendChild(el("td",s.site,"nw"));for(const p of f.priorities){
   const d=el("td",s.waiting[p]||0);d.dataset.priority=p;tr.appendChild(d);}
  tr.appendChild(el("td",s.dispatched,"dispatched"));
  tr.appendChild(el("td",s.in_flight+" / "+(s.cap?s.cap:"no cap"),"inflight nw"));
  if(s.paused)tr.className="pausedrow";tr.appendChild(clamped(pauseText(s.paused),"paused"));
  t.appendChild(tr);}
 const ev=$("flowevents");clear(ev);for(const e of f.events){const tr=el("tr");
  tr.dataset.type=e.type;tr.appendChild(el("td",when(e.at),"nw"));
  tr.appendChild(el("td",e.type,"nw"));tr.appendChild(el("td",e.site,"nw"));
  tr.appendChild(clamped(e.reason||"-"));ev.appendChild(tr);}
 if(!f.events.length){const tr=el("tr");const d=el("td","none yet","muted");d.colSpan=4;
  tr.appendChild(d);ev.appendChild(tr);}}
function whState(e){if(e.disabled)return "disabled since "+when(Date.parse(e.disabled.at)/1000)+
 " UTC"+(e.disabled.reason?": "+e.disabled.reason:"");if(e.failing_since)return "failing since "+
 when(Date.parse(e.failing_since)/1000)+" UTC, for "+ago(e.failing_seconds);return "ok";}
function drawWebhooks(w){const box=$("webhooks");box.hidden=!w.endpoints.length;
 const t=$("whrows");clear(t);for(const e of w.endpoints){const tr=el("tr");
  tr.dataset.endpoint=e.id;tr.className=e.disabled?"whdisabled":e.failing_since?"whfailing":"";
  tr.appendChild(el("td",e.id,"nw"));tr.appendChild(clamped(e.url,"url"));
  tr.appendChild(el("td",e.pending,"pending"));tr.appendChild(el("td",e.in_flight,"inflight"));
  tr.appendChild(el("td",e.oldest_pending_seconds===null?"-":ago(e.oldest_pending_seconds),
   "oldest nw"));tr.appendChild(el("td",e.dead,"dead"));
  tr.appendChild(day(e.last_success?Date.parse(e.last_success)/1000:0));
  tr.appendChild(clamped(whState(e),"whstate"));t.appendChild(tr);}
 const tried=Object.entries(w.attempts).filter(([k,n])=>n).sort().map(([k,n])=>k+"="+n).join(" ");
 $("whtotals").textContent="delivered "+w.delivered+", dead-lettered "+w.dead_lettered+
  ", replayed "+w.replayed+"; attempts "+(tried||"none");}
let selected=null;
async function loadList(){const p=new URLSearchParams({q:$("q").value,state:$("state").value,
 site:$("site").value,limit:"100"});
 try{const rows=await get("/api/requests?"+p);const t=$("list");clear(t);
  for(const r of rows){const tr=el("tr");tr.dataset.id=r.request_id;
   if(r.request_id===selected)tr.className="sel";
   tr.appendChild(el("td",r.request_id));const s=el("td");
   s.appendChild(el("span",r.state,"st st-"+r.state));s.className="nw stcol";tr.appendChild(s);
   tr.appendChild(el("td",r.site||"-","nw sitecol"));
   tr.appendChild(day(r.updated_at));tr.appendChild(clamped(r.detail||"-","detail"));
   tr.addEventListener("click",()=>show(r.request_id));t.appendChild(tr);}
  $("listnote").textContent=rows.length?rows.length+" shown, newest first":"no requests match";
  problem(null);}catch(e){problem(e);}}
async function show(id){selected=id;for(const tr of $("list").children)
 tr.className=tr.dataset.id===id?"sel":"";const box=$("timeline");
 $("tltitle").textContent="Timeline of "+id;
 try{const d=await get("/api/request?id="+encodeURIComponent(id));clear(box);box.className="";
  const rec=d.record;const meta=el("table");
  for(const k of ["state","job_id","content_id","error_code","error_message","error_meaning",
   "retries","created_at","finished_at"]){if(rec[k]===undefined)continue;const tr=el("tr");
   tr.appendChild(el("th",k));tr.appendChild(el("td",rec[k]));meta.appendChild(tr);}
  if(rec.metadata!==undefined){const tr=el("tr");tr.appendChild(el("th","metadata"));
   const td=el("td");td.appendChild(el("pre",JSON.stringify(rec.metadata)));tr.appendChild(td);
   meta.appendChild(tr);}
  box.appendChild(meta);const ev=el("table");ev.id="events";
  const h=el("tr");for(const c of ["time (UTC)","event","details"])h.appendChild(el("th",c));
  ev.appendChild(h);const skip=new Set(["schema","event_id","type","request_id","ts"]);
  for(const e of d.events){const tr=el("tr");tr.dataset.type=e.type;
   tr.appendChild(el("td",String(e.ts).slice(0,23).replace("T"," "),"when"));
   tr.appendChild(el("td",e.type,"nw"));const rest={};for(const k in e)if(!skip.has(k))rest[k]=e[k];
   tr.appendChild(el("td",Object.entries(rest).map(([k,v])=>k+"="+(typeof v==="object"?
    JSON.stringify(v):v)).join("  ")));ev.appendChild(tr);}
  if(!d.events.length){const tr=el("tr");tr.appendChild(el("td","no events left","muted"));
   ev.appendChild(tr);}box.appendChild(ev);problem(null);}
 catch(e){clear(box);box.className="muted";box.textContent=String(e.message||e);}}
function drawSites(sites){const names=Object.keys(sites);const multi=names.length>1;
 document.body.classList.toggle("multi",multi);$("sitebox").hidden=!multi;
 const box=$("site");const chosen=box.value;while(box.options.length>1)box.remove(1);
 for(const n of names){const total=STATES.reduce((a,k)=>a+(sites[n][k]||0),0);
  const o=el("option",n+" ("+total+")");o.value=n;box.appendChild(o);}
 box.value=names.includes(chosen)?chosen:"";}
async function refresh(){try{const p=new URLSearchParams({site:$("site").value});
 const [s,f,w]=await Promise.all([get("/api/summary?"+p),get("/api/flow"),
  get("/api/webhooks")]);
 drawSites(s.sites);drawCounts(s.counts);drawFlow(f);drawWebhooks(w);
 drawChart(s.chart);drawFailures(s.failures,s.failures_error);
 $("updated").textContent="updated "+when(s.now)+" UTC";problem(null);}catch(e){problem(e);}}
addEventListener("resize",()=>{if(shown)drawChart(shown);});  // drawn to its width, in pixels
let timer=null;function later(){clearTimeout(timer);timer=setTimeout(loadList,250);}
$("q").addEventListener("input",later);$("state").addEventListener("change",loadList);
$("site").addEventListener("change",()=>{refresh();loadList();});
refresh();loadList();setInterval(()=>{refresh();loadList();},10000);
